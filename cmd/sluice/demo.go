package main

import (
	"context"
	"errors"
	"io"
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--duration D] [--load X] [--markdown]")
	dur := fs.Duration("duration", 16*time.Second, "length of each of the three replays (the trace's 15 minutes are compressed into it)")
	load := fs.Float64("load", 1.1, "mean offered load as a multiple of the fixed pool's capacity (the ramp starts below it and peaks above)")
	backends := fs.Int("backends", 3, "simulated inference servers of the fixed pool (the scale-out leg starts with one fewer, grows to twice as many)")
	quiet := fs.Bool("quiet", false, "no progress lines")
	markdown := fs.Bool("markdown", false, "print only the table, as Markdown, on stdout (the rest goes to stderr): scripts/demo-readme.sh puts it in the README")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// demo.Run takes a zero or negative value for its default: checked
	// here, so that --backends 0 or --load -1 is refused, not replaced.
	switch {
	case *dur <= 0:
		return usagef("--duration %v: want a positive duration, e.g. 16s", *dur)
	case !(*load > 0) || math.IsInf(*load, 0):
		return usagef("--load %v: want a positive number, e.g. 1.1", *load)
	case *backends < 1:
		return usagef("--backends %d: want at least 1", *backends)
	}
	opt := demo.Options{Backends: *backends, LegDuration: *dur, Load: *load}
	if !*quiet {
		opt.Progress = stderr
	}
	out := stdout
	if *markdown {
		out = stderr
	}
	rep, err := demo.Run(ctx, opt, out)
	if errors.Is(err, demo.ErrEmptyReplay) {
		return usagef("%v", err) // a command line it cannot take: exit 2
	}
	if err != nil || !*markdown {
		return err
	}
	return rep.WriteTable(stdout, true)
}
