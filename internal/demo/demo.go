// Package demo runs the README's one-command demonstration in one process:
// pools of simulated inference servers, the Sluice gateway in front of
// them, and 15 minutes of a real trace (Azure LLM inference, a ramp from
// about 4.6 to 8.4 requests/s, embedded) compressed and replayed three
// times — through a plain round-robin proxy (what a load balancer without
// LLM awareness does), through Sluice, and through Sluice in front of a
// smaller pool that an actuator grows on Sluice's desired-backends signal
// with a cold start — ending in the seed document's before/after table.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Options tune the demo; the zero value is the README's demo.
type Options struct {
	Backends    int           // the fixed pool of the first two legs, default 3
	ScaleFrom   int           // the scale-out leg's first pool, default Backends-1 (at least 1)
	ScaleMax    int           // the most servers the actuator starts, default 2 x Backends
	LegDuration time.Duration // length of each replay, default 16s
	// Load is the replay's mean rate as a multiple of the fixed pool's
	// capacity for the trace's mean request, default 1.1: the ramp starts
	// near 0.8x and peaks near 1.4x (a minute's mean; seconds go higher).
	Load float64
	// ColdStart is how long a new server takes to serve, in trace time
	// (default 3m, compressed with the trace).
	ColdStart time.Duration
	SLOTTFT   time.Duration // goodput bound, default 2s
	Sim       sim.Config    // simulator knobs; zero = the demo's small fast engine
	Progress  io.Writer     // progress lines; nil = silent
	// ProgressEvery is the interval of a leg's progress lines, default 5s.
	ProgressEvery time.Duration
	Logger        *slog.Logger // gateway logs; nil = discarded
}

func (o *Options) defaults() {
	if o.Backends <= 0 {
		o.Backends = 3
	}
	if o.ScaleFrom <= 0 {
		o.ScaleFrom = max(o.Backends-1, 1)
	}
	if o.ScaleMax <= 0 {
		o.ScaleMax = 2 * o.Backends
	}
	o.ScaleMax = max(o.ScaleMax, o.ScaleFrom)
	if o.LegDuration <= 0 {
		o.LegDuration = 16 * time.Second
	}
	if o.Load <= 0 {
		o.Load = 1.1
	}
	if o.ColdStart <= 0 {
		o.ColdStart = 3 * time.Minute
	}
	if o.SLOTTFT <= 0 {
		o.SLOTTFT = 2 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	if o.Sim == (sim.Config{}) {
		// A small engine with a short queue, like a GPU server tuned for
		// latency: it answers "server busy" quickly when flooded.
		o.Sim = sim.Config{Slots: 8, MaxWaiting: 8, DecodeStepBase: 5 * time.Millisecond,
			DecodeStepPerSeq: 250 * time.Microsecond, PrefillTokensPerSec: 20000}
	}
	o.Sim.Model = "sim-model"
	if o.Progress != nil {
		// The replay's progress and the actuator's decisions are written
		// from two goroutines.
		o.Progress = &lockedWriter{w: o.Progress}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Report is what the demo measured.
type Report struct {
	Trace       string
	CapacityRPS float64 // the fixed pool's, for the trace's mean request
	MeanRPS     float64 // offered, averaged over a leg
	Requests    int     // per leg
	Compress    float64 // trace seconds per demo second
	ColdStart   time.Duration
	SLOTTFT     time.Duration
	Legs        []Leg // round robin, Sluice, Sluice + predictive scale-out
}

// Leg is one replay.
type Leg struct {
	Name        string
	Result      *bench.Result
	Utilisation float64 // busy batch slots / slots of the servers started, sampled
	// FirstBackends and PeakBackends are the pool's size at the start and
	// its largest; ScaleOut is empty for the fixed pools.
	FirstBackends, PeakBackends int
	ScaleOut                    []ScaleEvent
	Elastic                     bool
}

// ErrEmptyReplay: the replay's length and load keep no request of the
// trace (Run refuses before starting anything).
var ErrEmptyReplay = errors.New("the replay would send no request")

// Run executes the demo and writes the table to out.
func Run(ctx context.Context, opt Options, out io.Writer) (*Report, error) {
	opt.defaults()
	pl, err := buildPlan(opt.LegDuration, opt.Load, opt.Backends, opt.Sim)
	if err != nil {
		return nil, err
	}
	if len(pl.arrivals) == 0 {
		// --duration 1ns (or a tiny --load) thinned the trace to nothing:
		// three empty replays ended in a table of zeros and "-", exit 0.
		return nil, fmt.Errorf("%w: %s per replay at %gx capacity keeps none of the trace's %d requests; lengthen --duration (default 16s) or raise --load",
			ErrEmptyReplay, opt.LegDuration, opt.Load, pl.traceRequests)
	}
	capacity := pl.perServerRPS * float64(opt.Backends)
	cold := time.Duration(float64(opt.ColdStart) / pl.compress)
	rep := &Report{Trace: TraceName, CapacityRPS: capacity, MeanRPS: pl.meanRPS, Requests: len(pl.arrivals),
		Compress: pl.compress, ColdStart: cold, SLOTTFT: opt.SLOTTFT}
	fmt.Fprintf(out, "Sluice demo: %s, compressed %.0fx into %s per replay\n", TraceName, pl.compress, opt.LegDuration)
	// The replay is not the whole trace: say so, with what was changed,
	// so that nobody reads 896 requests as the trace's 15 minutes.
	fmt.Fprintf(out, "Load: %d of the trace's %d requests (%s evenly, keeping its ramp; prompts and answers at %.0f%% of their length), %.0f req/s on average (%.1fx the capacity of %d simulated servers, %.1f req/s for the mean request of %d+%d tokens), rising through the replay; SLO TTFT <= %s\n",
		len(pl.arrivals), pl.traceRequests, thinnedOrRepeated(len(pl.arrivals), pl.traceRequests), 100*tokenScale,
		pl.meanRPS, pl.meanRPS/capacity, opt.Backends, capacity, pl.meanIn, pl.meanOut, opt.SLOTTFT)
	fmt.Fprintf(out, "Scale-out leg: %d servers to start, at most %d, cold start %s of trace time (%.1fs here)\n\n",
		opt.ScaleFrom, opt.ScaleMax, opt.ColdStart, cold.Seconds())

	legs := []struct {
		name string
		run  func(context.Context, *Leg, func(string) bench.Config) error
	}{
		{"plain round robin", func(ctx context.Context, l *Leg, bc func(string) bench.Config) error {
			return fixedLeg(ctx, opt, l, bc, false)
		}},
		{"Sluice", func(ctx context.Context, l *Leg, bc func(string) bench.Config) error {
			return fixedLeg(ctx, opt, l, bc, true)
		}},
		{"Sluice + predictive scale-out", func(ctx context.Context, l *Leg, bc func(string) bench.Config) error {
			return scaleOutLeg(ctx, opt, pl, cold, l, bc)
		}},
	}
	for i, leg := range legs {
		fmt.Fprintf(out, "[%d/%d] replaying through %s ...\n", i+1, len(legs), leg.name)
		l := Leg{Name: leg.name}
		label := fmt.Sprintf("[%d/%d] %s", i+1, len(legs), leg.name)
		bc := func(target string) bench.Config {
			return bench.Config{Target: target, Model: "sim-model", Stream: true, Arrivals: pl.arrivals,
				Timeout: 60 * time.Second, SLOTTFT: opt.SLOTTFT, Label: leg.name,
				ProgressEvery: opt.ProgressEvery, ProgressFunc: progressLine(opt.Progress, label, opt.LegDuration)}
		}
		if err := leg.run(ctx, &l, bc); err != nil {
			return nil, fmt.Errorf("%s: %w", leg.name, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rep.Legs = append(rep.Legs, l)
	}
	fmt.Fprintln(out)
	err = rep.WriteTable(out, false)
	return rep, err
}

// thinnedOrRepeated says how the replay's n requests came from the
// trace's: fewer are a thinning, more a duplication.
func thinnedOrRepeated(n, trace int) string {
	if n <= trace {
		return "thinned"
	}
	return "duplicated"
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// progressLine prints a leg's counts, so a replay is never silent.
func progressLine(w io.Writer, label string, leg time.Duration) func(bench.Progress) {
	if w == nil {
		return nil
	}
	return func(p bench.Progress) {
		fmt.Fprintf(w, "  %s  %2.0fs/%s  sent %d  served %d  refused %d  other errors %d  in flight %d\n",
			label, p.Elapsed.Seconds(), leg, p.Sent, p.OK, p.Refused, p.Done-p.OK-p.Refused, p.InFlight)
	}
}

// fixedLeg replays through a round-robin proxy or Sluice (its defaults)
// in front of a fresh fixed pool.
func fixedLeg(ctx context.Context, opt Options, l *Leg, bc func(string) bench.Config, sluice bool) error {
	pool := newSimPool(opt.Sim)
	defer pool.stop()
	urls, err := pool.startN(opt.Backends)
	if err != nil {
		return err
	}
	var target string
	if sluice {
		cfg := GatewayConfig(urls)
		gw, err := StartGateway(ctx, &cfg, opt.Logger)
		if err != nil {
			return err
		}
		defer gw.Stop()
		target = gw.URL
	} else {
		lb, stop, err := StartRoundRobin(urls)
		if err != nil {
			return err
		}
		defer stop()
		target = lb
	}
	u := sampleUtilisation(pool, 100*time.Millisecond)
	res, err := bench.Run(ctx, bc(target))
	l.Utilisation = u.stop()
	l.Result, l.FirstBackends, l.PeakBackends = res, opt.Backends, opt.Backends
	return err
}

// scaleOutLeg replays through Sluice in front of ScaleFrom servers listed
// in a targets file, with the actuator adding servers on its signal.
func scaleOutLeg(ctx context.Context, opt Options, pl plan, cold time.Duration, l *Leg, bc func(string) bench.Config) error {
	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	targets := filepath.Join(dir, "targets.json")
	pool := newSimPool(opt.Sim)
	defer pool.stop()
	urls, err := pool.startN(opt.ScaleFrom)
	if err != nil {
		return err
	}
	if err := writeTargets(targets, urls); err != nil {
		return err
	}
	cfg := scaleOutConfig(targets, pl.compress, cold)
	gw, err := StartGateway(ctx, &cfg, opt.Logger)
	if err != nil {
		return err
	}
	defer gw.Stop()
	act := &actuator{pool: pool, targets: targets, scaling: scalingURL(gw.AdminURL, "sim-model"), cold: cold,
		max: opt.ScaleMax, every: 250 * time.Millisecond, progress: opt.Progress, serving: urls, peak: opt.ScaleFrom}
	actCtx, stopAct := context.WithCancel(ctx)
	actDone := make(chan struct{})
	act.start = time.Now()
	go func() { defer close(actDone); act.run(actCtx) }()
	u := sampleUtilisation(pool, 100*time.Millisecond)
	res, err := bench.Run(ctx, bc(gw.URL))
	l.Utilisation = u.stop()
	stopAct()
	<-actDone
	l.Result, l.FirstBackends, l.Elastic = res, opt.ScaleFrom, true
	l.ScaleOut, l.PeakBackends = act.result()
	return err
}

// StartRoundRobin is the "before": a reverse proxy on a free loopback port
// that rotates over the backends and passes whatever they answer straight to
// the client. It returns the proxy's base URL and a func that stops it.
func StartRoundRobin(urls []string) (string, func(), error) {
	targets := make([]*url.URL, len(urls))
	for i, u := range urls {
		t, err := url.Parse(u)
		if err != nil {
			return "", nil, err
		}
		targets[i] = t
	}
	var next atomic.Uint64
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[(next.Add(1)-1)%uint64(len(targets))])
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true},
		ErrorLog:  log.New(io.Discard, "", 0), // the bench records every failure
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// GatewayConfig is the demo's gateway config: Sluice's defaults (admission
// included: nothing is tuned; the forecaster runs, as by default), one
// model "sim-model" served by urls, no access log, a short shutdown grace,
// the admin listener on a free loopback port (parallel runs do not collide
// on 9091) and no forecast snapshot: a demo's or benchmark's made-up
// traffic must not land in the user's data directory, where their real
// gateway would restore it.
func GatewayConfig(urls []string) config.Config {
	cfg := config.Default()
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Forecast.Snapshot = "off"
	cfg.Queue.Enabled = false // the demo measures interactive traffic only
	cfg.Log.Access = false
	cfg.ShutdownGrace = config.Duration(2 * time.Second)
	m := config.Model{Name: "sim-model"}
	for _, u := range urls {
		m.Backends = append(m.Backends, config.Backend{URL: u})
	}
	cfg.Models = []config.Model{m}
	return cfg
}

// Gateway is Sluice running in-process.
type Gateway struct {
	URL      string // the public listener's base URL (/v1/*)
	AdminURL string // the admin listener's base URL (/metrics, /status, /spare); "" when admin.listen is off
	Stop     func() // shuts it down and waits for it
}

// StartGateway runs Sluice in-process with cfg on a free loopback port (the
// config's Listen is ignored; its Admin.Listen is used, so give it
// "127.0.0.1:0" as GatewayConfig does).
func StartGateway(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a, err := app.New(cfg, app.Source{}, logger)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gw := &Gateway{}
	adminAddr, err := a.ListenAdmin("")
	if err != nil {
		ln.Close()
		return nil, err
	}
	if adminAddr != nil {
		gw.AdminURL = "http://" + adminAddr.String()
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(runCtx, ln); close(done) }()
	gw.URL = "http://" + ln.Addr().String()
	gw.Stop = func() { cancel(); <-done }
	return gw, nil
}
