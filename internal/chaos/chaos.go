// Package chaos is `sluice chaos`: it starts a simulated inference pool,
// the gateway as a child process (`sluice serve` with the default config),
// and Redis or NATS where a scenario needs them; then, for each scenario, it
// measures a well-behaved client in a calm phase, runs the attack next to
// the same client, and prints one table row of what the gateway let happen:
// requests served and refused, unannounced failures, jobs lost, peak RSS,
// the client's p99 time to first token against its calm baseline, and the
// goroutines and fds left behind.
//
// The suite measures; it does not assume the gateway is fixed. Each row
// has a PASS/FAIL per target of issue 11 §5, and Run reports whether all
// passed so the CLI can exit non-zero under --strict.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// Options configure a run; zero values take the defaults in comments.
type Options struct {
	// Exe is the sluice binary run as `Exe serve --config FILE` (required).
	Exe string
	// Backends is the number of simulators in the pool, default 3.
	Backends int
	// Quick is the CI form: short phases, smaller attacks.
	Quick bool
	// Scenarios to run by name; empty: every scenario (every quick one
	// with Quick). "soak" runs only when named.
	Scenarios []string
	// Duration of each scenario's attack phase; default 4s quick, 20s
	// otherwise (1h for soak).
	Duration time.Duration
	// Calm is the length of each calm baseline phase; default 3s quick,
	// 10s otherwise.
	Calm time.Duration
	// Progress receives a line per phase; nil = silent.
	Progress io.Writer
	// Trace, when set, receives every well-behaved request of the calm
	// and attack phases with the backend that served it (trace.go); it
	// turns on the gateway's access log.
	Trace io.Writer
}

func (o *Options) defaults() {
	if o.Backends <= 0 {
		o.Backends = 3
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
		if o.Quick {
			o.Duration = 4 * time.Second
		}
	}
	if o.Calm <= 0 {
		o.Calm = 10 * time.Second
		if o.Quick {
			o.Calm = 3 * time.Second
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// simConfig is the pool's engine: small and slow enough that the harness,
// the gateway and the pool fit on a 2-core machine next to other work.
var simConfig = sim.Config{Model: "sim-model", Slots: 8, MaxWaiting: 16,
	DecodeStepBase: 20 * time.Millisecond, DecodeStepPerSeq: 250 * time.Microsecond, PrefillTokensPerSec: 20000}

const (
	promptTokens = 64
	outputTokens = 32
)

// Report is one run's table.
type Report struct {
	CapacityRPS float64 // the pool's, from the simulator config
	ClientRPS   float64 // the well-behaved client's rate (50% of capacity)
	Rows        []Row
}

// Pass reports whether every row ran and met every target that applies.
func (r *Report) Pass() bool { return r.PassOn(TargetNames) }

// PassOn is Pass judged on the named targets only (TargetNames).
func (r *Report) PassOn(targets []string) bool {
	for _, row := range r.Rows {
		if row.Skipped != "" {
			continue
		}
		if row.Err != "" || !row.passes(targets) {
			return false
		}
	}
	return true
}

// InternalErrors lists the rows where the harness itself failed (not the
// gateway's targets).
func (r *Report) InternalErrors() []string {
	var out []string
	for _, row := range r.Rows {
		if row.Err != "" {
			out = append(out, row.Name+": "+row.Err)
		}
	}
	return out
}

// Run runs the selected scenarios and writes the table to out.
func Run(ctx context.Context, opt Options, out io.Writer) (*Report, error) {
	soak := opt.Duration
	if soak <= 0 {
		soak = time.Hour
	}
	opt.defaults()
	if opt.Exe == "" {
		return nil, errors.New("chaos: no gateway binary")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		return nil, fmt.Errorf("chaos: %w", errNotLinux)
	}
	raiseFDLimit()
	selected, err := selectScenarios(opt.Scenarios, opt.Quick)
	if err != nil {
		return nil, err
	}
	perServer, _ := simConfig.Capacity(promptTokens, outputTokens)
	capacity := perServer * float64(opt.Backends)
	rep := &Report{CapacityRPS: capacity, ClientRPS: capacity / 2}
	fmt.Fprintf(out, "Sluice chaos: %d simulated servers (capacity %.1f req/s of %d-token prompts, %d-token answers); "+
		"well-behaved client on %s at %.1f req/s (50%%), streaming; attackers on 127.0.0.3+\n",
		opt.Backends, capacity, promptTokens, outputTokens, wellBehavedIP, rep.ClientRPS)
	fmt.Fprintf(out, "Phases: calm %s, attack %s per scenario; a fresh gateway (`sluice serve`, default config) per scenario\n\n", opt.Calm, opt.Duration)

	base, err := os.MkdirTemp("", "sluice-chaos-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	for _, sc := range selected {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(opt.Progress, "chaos: %s ...\n", sc.name)
		r := &runner{opt: opt, base: base, capacity: capacity, soak: soak}
		row := r.run(ctx, sc)
		if ctx.Err() != nil {
			// Cut short by SIGINT or SIGTERM: its "after" figures were
			// taken from a gateway being stopped (goroutines 140 -> 0, a
			// leak FAIL), not measured. The table keeps finished rows.
			fmt.Fprintf(opt.Progress, "chaos: %s cut short (%v): left out of the table\n", sc.name, context.Cause(ctx))
			break
		}
		fmt.Fprintf(opt.Progress, "chaos: %s done: %s\n", sc.name, row.summary())
		rep.Rows = append(rep.Rows, row)
	}
	writeTable(out, rep)
	return rep, ctx.Err()
}

func selectScenarios(names []string, quick bool) ([]scenario, error) {
	all := scenarios()
	if len(names) == 0 {
		var out []scenario
		for _, s := range all {
			if s.soak || (quick && !s.quick) {
				continue
			}
			out = append(out, s)
		}
		return out, nil
	}
	var out []scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s scenario) bool { return s.name == n })
		if i < 0 {
			var known []string
			for _, s := range all {
				known = append(known, s.name)
			}
			return nil, fmt.Errorf("chaos: unknown scenario %q (known: %s)", n, strings.Join(known, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// ScenarioNames lists every scenario with a one-line description.
func ScenarioNames() []string {
	var out []string
	for _, s := range scenarios() {
		tag := ""
		switch {
		case s.soak:
			tag = " (only when named)"
		case !s.quick:
			tag = " (not in --quick)"
		}
		out = append(out, fmt.Sprintf("%-18s %s%s", s.name, s.what, tag))
	}
	return out
}
