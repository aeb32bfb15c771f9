package benchkit

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Rig is one leg's set-up: fresh simulators and what stands in front of
// them (a round-robin proxy or Sluice gateways). Every leg gets its own, so
// no leg inherits a warm cache, a learned limit or a queue from another.
type Rig struct {
	Sims    []string // simulator base URLs
	Targets []string // where the load goes: the proxy's or the gateways' base URLs
	Admins  []string // the gateways' admin base URLs (/metrics); none for the proxy
	stops   []func()
}

// StartRig starts n simulators with c on loopback ports.
func StartRig(ctx context.Context, n int, c sim.Config) (*Rig, error) {
	urls, stop, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", n, c, nil)
	if err != nil {
		return nil, err
	}
	return &Rig{Sims: urls, stops: []func(){stop}}, nil
}

// RoundRobin puts Go's httputil.ReverseProxy, rotating over the
// simulators, in front of them (demo.StartRoundRobin).
func (r *Rig) RoundRobin() error {
	target, stop, err := demo.StartRoundRobin(r.Sims)
	if err != nil {
		return err
	}
	r.add(target, "", stop)
	return nil
}

// Sluice starts a gateway with cfg (build it from demo.GatewayConfig of
// r.Sims) and adds it as a target.
func (r *Rig) Sluice(ctx context.Context, cfg config.Config) error {
	gw, err := demo.StartGateway(ctx, &cfg, nil)
	if err != nil {
		return err
	}
	r.add(gw.URL, gw.AdminURL, gw.Stop)
	return nil
}

// Gateway adds a gateway the caller started: its base URL, its admin base
// URL and how to stop it (Stop calls it).
func (r *Rig) Gateway(target, admin string, stop func()) { r.add(target, admin, stop) }

// Defer has Stop call stop too, before what was started earlier (a
// temporary directory, a worker in front of a gateway).
func (r *Rig) Defer(stop func()) { r.stops = append(r.stops, stop) }

func (r *Rig) add(target, admin string, stop func()) {
	r.Targets = append(r.Targets, target)
	if admin != "" {
		r.Admins = append(r.Admins, admin)
	}
	r.stops = append(r.stops, stop)
}

// Sample starts sampling the rig's simulators and gateways every every,
// for until (0: until Finish).
func (r *Rig) Sample(ctx context.Context, every, until time.Duration) *Sampler {
	return StartSampler(ctx, SamplerConfig{Sims: r.Sims, Gateways: r.Admins, Every: every, Until: until})
}

// Stop stops everything the rig started, front first.
func (r *Rig) Stop() {
	for _, stop := range slices.Backward(r.stops) {
		stop()
	}
	r.stops = nil
}

// Progress writes a benchmark's progress lines (stderr in the programs)
// and numbers its legs.
type Progress struct {
	W    io.Writer // nil = silent
	Legs int       // legs planned; a leg beyond them raises it
	run  int
}

// Printf writes one line.
func (p *Progress) Printf(format string, args ...any) {
	if p.W != nil {
		fmt.Fprintf(p.W, format+"\n", args...)
	}
}

// Leg announces the next leg: "[i/n] what (load avg …)".
func (p *Progress) Leg(format string, args ...any) {
	p.run++
	p.Legs = max(p.Legs, p.run)
	p.Printf("[%d/%d] %s (load avg %s)", p.run, p.Legs, fmt.Sprintf(format, args...), Loadavg())
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// FlagsSet is the names of the flags given on the command line (after
// flag.Parse): an explicit flag wins over what --quick would set.
func FlagsSet() map[string]bool {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// Fatal prints "name: err" and exits 1: for flag errors before Main.
func Fatal(name string, err error) {
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(1)
}
