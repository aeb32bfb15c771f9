package main

import (
	"context"
	"io"
	"time"

	"github.com/sluice-gw/sluice/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--duration D] [--overload X]", stderr)
	dur := fs.Duration("duration", 25*time.Second, "length of each of the two replays")
	overload := fs.Float64("overload", 2, "burst rate as a multiple of the pool's capacity")
	backends := fs.Int("backends", 3, "simulated inference servers")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opt := demo.Options{Backends: *backends, LegDuration: *dur, Overload: *overload}
	if !*quiet {
		opt.Progress = stderr
	}
	_, err := demo.Run(ctx, opt, stdout)
	return err
}
