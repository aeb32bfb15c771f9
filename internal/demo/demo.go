// Package demo runs the README's one-command demonstration in one process:
// a pool of simulated inference servers, the Sluice gateway in front of
// them, and the same bursty load replayed twice — once through a plain
// round-robin proxy (what a load balancer without LLM awareness does) and
// once through Sluice — ending in the seed document's before/after table.
package demo

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Options tune the demo; the zero value is the README's demo.
type Options struct {
	Backends     int           // simulated servers, default 3
	LegDuration  time.Duration // length of each replay, default 25s
	Overload     float64       // burst rate as a multiple of pool capacity, default 2
	PromptTokens int           // default 256
	OutputTokens int           // default 64
	SLOTTFT      time.Duration // goodput bound, default 2s
	Sim          sim.Config    // simulator knobs; zero = the demo's small fast engine
	Progress     io.Writer     // progress lines; nil = silent
	Logger       *slog.Logger  // gateway logs; nil = discarded
}

func (o *Options) defaults() {
	if o.Backends <= 0 {
		o.Backends = 3
	}
	if o.LegDuration <= 0 {
		o.LegDuration = 25 * time.Second
	}
	if o.Overload <= 0 {
		o.Overload = 2
	}
	if o.PromptTokens <= 0 {
		o.PromptTokens = 256
	}
	if o.OutputTokens <= 0 {
		o.OutputTokens = 64
	}
	if o.SLOTTFT <= 0 {
		o.SLOTTFT = 2 * time.Second
	}
	if o.Sim == (sim.Config{}) {
		// A small engine with a short queue, like a GPU server tuned for
		// latency: it answers "server busy" quickly when flooded.
		o.Sim = sim.Config{Slots: 8, MaxWaiting: 8, DecodeStepBase: 5 * time.Millisecond,
			DecodeStepPerSeq: 250 * time.Microsecond, PrefillTokensPerSec: 20000}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Report is what the demo measured.
type Report struct {
	CapacityRPS    float64
	Direct, Sluice *bench.Result
}

// Run executes the demo and writes the table to out.
func Run(ctx context.Context, opt Options, out io.Writer) (*Report, error) {
	opt.defaults()
	simCfg := opt.Sim
	simCfg.Model = "sim-model"
	urls, stopSims, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", opt.Backends, simCfg, nil)
	if err != nil {
		return nil, err
	}
	defer stopSims()
	perServer, _ := simCfg.Capacity(opt.PromptTokens, opt.OutputTokens)
	capacity := perServer * float64(opt.Backends)

	// Bursts at Overload x capacity for 2 s, then 3 s of quiet: the mean load
	// (0.8x capacity by default) fits the pool, the bursts do not. A naive
	// balancer passes on the backends' "server busy"; Sluice queues what can
	// still start within the TTFT objective and refuses the rest at once.
	on, off := 2*time.Second, 3*time.Second
	arrivals := bench.OnOff(opt.Overload*capacity, on, off, opt.LegDuration, opt.PromptTokens, opt.OutputTokens)
	fmt.Fprintf(out, "Sluice demo: %d simulated inference servers (capacity %.1f req/s in total for %d-token prompts, %d-token answers)\n",
		opt.Backends, capacity, opt.PromptTokens, opt.OutputTokens)
	fmt.Fprintf(out, "Load: bursts of %.0f req/s (%.1fx capacity) for %s, quiet for %s; %d requests over %s per run; SLO TTFT <= %s\n\n",
		opt.Overload*capacity, opt.Overload, on, off, len(arrivals), opt.LegDuration, opt.SLOTTFT)

	lbURL, stopLB, err := StartRoundRobin(urls)
	if err != nil {
		return nil, err
	}
	defer stopLB()
	gwCfg := GatewayConfig(urls)
	gw, err := StartGateway(ctx, &gwCfg, opt.Logger)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()

	rep := &Report{CapacityRPS: capacity}
	legs := []struct {
		name, target string
		res          **bench.Result
	}{
		{"plain round robin", lbURL, &rep.Direct},
		{"through Sluice", gw.URL, &rep.Sluice},
	}
	for i, leg := range legs {
		fmt.Fprintf(out, "[%d/2] replaying %s ...\n", i+1, leg.name)
		res, err := bench.Run(ctx, bench.Config{
			Target: leg.target, Model: "sim-model", Stream: true, Arrivals: arrivals,
			Timeout: 60 * time.Second, SLOTTFT: opt.SLOTTFT, Progress: opt.Progress, Label: leg.name,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", leg.name, err)
		}
		*leg.res = res
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := waitIdle(ctx, urls); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(out)
	err = bench.Compare(out, "Before / after (same servers, same load):", rep.Direct, rep.Sluice, "plain round robin", "Sluice")
	return rep, err
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
// included: nothing is tuned), one model "sim-model" served by urls, no
// access log, a short shutdown grace and the admin listener on a free
// loopback port (parallel runs do not collide on 9091).
func GatewayConfig(urls []string) config.Config {
	cfg := config.Default()
	cfg.Admin.Listen = "127.0.0.1:0"
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
	a, err := app.New(cfg, "", logger)
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

// waitIdle waits until the simulators have finished all work, so the second
// run starts from the same idle pool as the first.
func waitIdle(ctx context.Context, urls []string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		busy := false
		for _, u := range urls {
			resp, err := http.Get(u + "/metrics")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if running(string(b)) {
				busy = true
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func running(metrics string) bool {
	for _, name := range []string{"vllm:num_requests_running", "vllm:num_requests_waiting"} {
		var v float64
		i := indexLine(metrics, name)
		if i < 0 {
			continue
		}
		line := metrics[i:]
		for j := 0; j < len(line); j++ {
			if line[j] == '\n' {
				line = line[:j]
				break
			}
		}
		for j := len(line) - 1; j >= 0; j-- {
			if line[j] == ' ' {
				fmt.Sscan(line[j+1:], &v)
				break
			}
		}
		if v > 0 {
			return true
		}
	}
	return false
}

// indexLine finds the first sample line (not a # comment) of metric name.
func indexLine(s, name string) int {
	for i := 0; i+len(name) <= len(s); i++ {
		if (i == 0 || s[i-1] == '\n') && s[i:i+len(name)] == name {
			return i
		}
	}
	return -1
}
