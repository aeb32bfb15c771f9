package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/chaos"
)

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("chaos", "[--quick] [--scenarios a,b] [--duration D] [--strict | --enforce fail,jobs,leak,rss]")
	quick := fs.Bool("quick", false, "the CI form: a few seconds per scenario, smaller attacks")
	list := fs.String("scenarios", "", "comma-separated scenarios to run (default: all; all quick ones with --quick); see --list")
	dur := fs.Duration("duration", 0, "attack phase per scenario (default 4s with --quick, else 20s; soak: 1h)")
	calm := fs.Duration("calm", 0, "calm baseline phase per scenario (default 3s with --quick, else 10s)")
	backends := fs.Int("backends", 3, "simulated inference servers")
	strict := fs.Bool("strict", false, "exit non-zero when any target fails")
	enforce := fs.String("enforce", "", "exit non-zero when one of these targets fails, e.g. fail,jobs,leak,rss (of "+strings.Join(chaos.TargetNames, ",")+")")
	listOnly := fs.Bool("list", false, "list the scenarios and exit")
	quiet := fs.Bool("quiet", false, "no progress lines")
	trace := fs.String("trace", "", "write every well-behaved request (phase, time sent, TTFT, backend, attempts, hedge) to this file; turns on the gateway's access log")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *backends < 1 {
		return usagef("--backends %d: want at least 1", *backends)
	}
	if *dur < 0 || *calm < 0 {
		return usagef("--duration %v --calm %v: want zero (the default) or more", *dur, *calm)
	}
	var enforced []string
	if *enforce != "" {
		enforced = strings.Split(*enforce, ",")
		for _, t := range enforced {
			if !slices.Contains(chaos.TargetNames, t) {
				return usagef("--enforce: unknown target %q (known: %s)", t, strings.Join(chaos.TargetNames, ", "))
			}
		}
	}
	if *listOnly {
		for _, s := range chaos.ScenarioNames() {
			fmt.Fprintln(stdout, s)
		}
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the sluice binary to run the gateway: %w", err)
	}
	opt := chaos.Options{Exe: exe, Backends: *backends, Quick: *quick, Duration: *dur, Calm: *calm}
	var known []string
	for _, s := range chaos.ScenarioNames() {
		known = append(known, strings.Fields(s)[0])
	}
	if *list != "" {
		for _, n := range strings.Split(*list, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if !slices.Contains(known, n) {
					return usagef("--scenarios: unknown scenario %q (known: %s; --list says what each does)", n, strings.Join(known, ", "))
				}
				opt.Scenarios = append(opt.Scenarios, n)
			}
		}
	}
	if !*quiet {
		opt.Progress = stderr
	}
	if *trace != "" {
		f, err := os.Create(*trace)
		if err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		defer f.Close()
		opt.Trace = f
	}
	start := time.Now()
	rep, err := chaos.Run(ctx, opt, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n(%d scenarios in %s)\n", len(rep.Rows), time.Since(start).Round(time.Second))
	if errs := rep.InternalErrors(); len(errs) > 0 {
		return fmt.Errorf("harness errors: %s", strings.Join(errs, "; "))
	}
	if *strict && !rep.Pass() {
		return errors.New("targets failed (--strict)")
	}
	if len(enforced) > 0 {
		if !rep.PassOn(enforced) {
			return fmt.Errorf("targets failed (--enforce %s)", *enforce)
		}
	}
	return nil
}
