package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/sluice-gw/sluice/internal/app"
)

// runCheck is `sluice check --config FILE`, as `nginx -t`: the file read
// and validated as serve reads it (FILE:LINE: key.path: problem), then the
// runtime built aside and thrown away. Exit 0 means a start would get past
// its config and a SIGHUP would be taken.
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "--config FILE")
	path := fs.String("config", "", "YAML config `FILE` to check (as serve --config reads it)")
	if err := parseFlags(fs, args); err != nil {
		var bad *usageError
		if errors.As(err, &bad) && *path == "" && fs.NArg() == 1 {
			// nginx -t takes -c FILE, caddy validate --config FILE: the
			// file alone is the first thing a user tries.
			return usagef("unexpected argument %q (did you mean --config %s?)", fs.Arg(0), fs.Arg(0))
		}
		return err
	}
	if *path == "" {
		return usagef("need --config FILE")
	}
	cfg, err := app.Load(*path)
	if err != nil {
		return err
	}
	// Warnings of the build (an issuer's key set that did not answer) go
	// to stderr, as serve's would.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := app.Check(cfg, logger)
	if err != nil {
		return fmt.Errorf("config %s: %w", *path, err)
	}
	fmt.Fprintf(stdout, "config %s is valid: %s, %s (static; discovery adds its own at run time)\n", *path, count(c.Models, "model"), count(c.Backends, "backend"))
	return nil
}

// count is n and the noun, plural unless n is 1: "1 model", "3 backends".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
