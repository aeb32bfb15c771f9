// Command overload is Sluice's overload benchmark (issue 3, section 6). It
// prints the markdown tables of docs/BENCHMARKS.md:
//
//  1. Trace replay: the Azure LLM conversation trace, time-scaled to 1x, 2x
//     and 3x a simulated pool's capacity, replayed twice per load: through a
//     plain round-robin proxy (straight to the backends) and through Sluice.
//  2. Fairness: one tenant floods at 3x capacity while three behave at 0.15x
//     each, through the same two paths.
//
// Every leg gets fresh simulators and a fresh proxy or gateway, so no leg
// inherits a warm prefix cache, a tuned concurrency limit or a queue from
// the one before.
//
//	go run ./bench/overload                 # the full run, about 7 minutes
//	go run ./bench/overload --quick         # a smoke run, under 2 minutes
//	go run ./bench/overload --out docs/bench-overload.md --json overload.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/demo"
	"github.com/sluice-gw/sluice/internal/sim"
)

const defaultTrace = "/work/shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv"

// Paths a leg's load can take to the pool.
const (
	pathRR     = "round robin"
	pathSluice = "Sluice"
)

// Response headers the harness records for every request.
const (
	hdrRetryAfter = "Retry-After"
	// hdrBackend is set by Sluice (expose_backend) on responses relayed from
	// a backend, and never on its own refusals: it tells a backend's
	// "server busy" apart from Sluice's early refusal.
	hdrBackend = "X-Sluice-Backend"
)

// Targets of issue 3 at 3x capacity.
const (
	targetRefuse  = 50 * time.Millisecond
	targetGoodput = 0.90
	targetJain    = 0.95
)

// options are the benchmark's knobs; see the flags in main for each.
type options struct {
	Trace      string
	Backends   int
	Duration   time.Duration // per leg
	Loads      []float64     // x capacity
	Flood      float64       // flooding tenant's load, x capacity
	Behave     float64       // each behaving tenant's load, x capacity
	Behaving   int           // number of behaving tenants
	TokenScale float64
	MaxInput   int // clamp, in trace tokens (before TokenScale)
	MaxOutput  int
	SLO        time.Duration // TTFT bound of goodput
	MaxWait    time.Duration // Sluice's admission.max_wait
	MaxConc    int           // Sluice's static per-backend max_concurrency; 0 = adaptive
	Replay     bool
	Fairness   bool
	Seed       uint64
	Sim        sim.Config
	Command    string    // shown in the report
	Progress   io.Writer // one line per leg; nil = silent
}

// simConfig is the pool's engine: the simulator's documented defaults,
// spelled out so the report can state them.
func simConfig() sim.Config {
	return sim.Config{Model: "sim-model", Slots: 16, KVTokens: 65536, MaxWaiting: 64,
		PrefillTokensPerSec: 20000, DecodeStepBase: 10 * time.Millisecond,
		DecodeStepPerSeq: 250 * time.Microsecond, BlockSize: 16, PrefixCacheBlocks: 4096}
}

func main() {
	var opt options
	var quick bool
	var loads, scenarios, out, jsonOut string
	opt.Sim = simConfig()
	flag.StringVar(&opt.Trace, "trace", defaultTrace, "Azure LLM inference trace CSV (any bench.LoadTrace format works)")
	flag.IntVar(&opt.Backends, "backends", 3, "simulated inference servers in the pool")
	flag.DurationVar(&opt.Duration, "duration", 45*time.Second, "length of each leg (arrivals); --quick sets 8s unless given")
	flag.BoolVar(&quick, "quick", false, "short legs for a smoke run (under 2 minutes in total)")
	flag.StringVar(&loads, "loads", "1,2,3", "trace replay loads, as multiples of the pool's capacity")
	flag.Float64Var(&opt.Flood, "flood", 3, "fairness: the flooding tenant's load, x capacity")
	flag.Float64Var(&opt.Behave, "behave", 0.15, "fairness: each well-behaved tenant's load, x capacity")
	flag.IntVar(&opt.Behaving, "behaving", 3, "fairness: number of well-behaved tenants")
	flag.Float64Var(&opt.TokenScale, "token-scale", 0.25, "multiply the trace's token counts (after clamping) so the simulators run fast")
	flag.IntVar(&opt.MaxInput, "max-input", 1024, "clamp the trace's prompt tokens (before --token-scale)")
	flag.IntVar(&opt.MaxOutput, "max-output", 256, "clamp the trace's output tokens (before --token-scale)")
	flag.DurationVar(&opt.SLO, "slo", 2*time.Second, "goodput SLO: TTFT at most this")
	flag.DurationVar(&opt.MaxWait, "max-wait", 0, "Sluice admission.max_wait (default: --slo)")
	flag.IntVar(&opt.MaxConc, "max-concurrency", 0, "Sluice: static per-backend max_concurrency instead of the adaptive limit (0 = adaptive, the default)")
	flag.StringVar(&scenarios, "scenarios", "replay,fairness", "scenarios to run: replay, fairness")
	flag.Uint64Var(&opt.Seed, "seed", 1, "seed of the well-behaved tenants' Poisson arrivals")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()

	durationSet := false
	flag.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if quick && !durationSet {
		opt.Duration = 8 * time.Second
	}
	var err error
	if opt.Loads, err = parseLoads(loads); err != nil {
		fatal(err)
	}
	for _, s := range strings.Split(scenarios, ",") {
		switch strings.TrimSpace(s) {
		case "replay":
			opt.Replay = true
		case "fairness":
			opt.Fairness = true
		case "":
		default:
			fatal(fmt.Errorf("--scenarios: unknown scenario %q (want replay, fairness)", s))
		}
	}
	opt.Command = benchkit.CommandLine("./bench/overload", os.Args[1:])
	opt.Progress = os.Stderr

	benchkit.Main("overload", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, opt, md)
	})
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "overload:", err)
	os.Exit(1)
}

func parseLoads(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f, "x"), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--loads: bad load %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// Report is everything the benchmark measured; --json writes it.
type Report struct {
	Command  string           `json:"command"`
	Machine  benchkit.Machine `json:"machine"`
	Setup    Setup            `json:"setup"`
	Replay   []*Leg           `json:"replay,omitempty"`
	Fairness []*Leg           `json:"fairness,omitempty"`
	Targets  []Target         `json:"targets,omitempty"`
	Started  time.Time        `json:"started"`
	Elapsed  float64          `json:"elapsed_s"`
}

// Setup is the pool, the trace and the gateway configuration.
type Setup struct {
	Trace         string     `json:"trace"`
	TraceRows     int        `json:"trace_rows"`
	TokenScale    float64    `json:"token_scale"`
	ClampInput    int        `json:"clamp_input_tokens"`  // before scaling
	ClampOutput   int        `json:"clamp_output_tokens"` // before scaling
	MaxInput      int        `json:"max_input_tokens"`    // after scaling
	MaxOutput     int        `json:"max_output_tokens"`   // after scaling
	MeanPrompt    float64    `json:"mean_prompt_tokens"`
	MeanOutput    float64    `json:"mean_output_tokens"`
	MeanOver      int        `json:"mean_over_requests"` // the first N trace requests
	Backends      int        `json:"backends"`
	Sim           sim.Config `json:"sim"`
	SlotBound     bool       `json:"slot_bound"`          // the KV budget never limits the batch
	CapacityRPS   float64    `json:"capacity_rps"`        // pool
	CapacityTokS  float64    `json:"capacity_output_tps"` // pool
	PerServerRPS  float64    `json:"per_server_rps"`
	DurationS     float64    `json:"leg_duration_s"`
	SLOTTFTms     float64    `json:"slo_ttft_ms"`
	FloodX        float64    `json:"fairness_flood_x_capacity"`
	BehaveX       float64    `json:"fairness_behave_x_capacity"`
	SluiceChanges []string   `json:"sluice_config_changes"`
}

// Leg is one replay through one path.
type Leg struct {
	Scenario   string  `json:"scenario"`
	Load       float64 `json:"load_x_capacity"`
	Path       string  `json:"path"`
	Requests   int     `json:"requests"`
	TimeScale  float64 `json:"trace_time_scale,omitempty"`
	OfferedRPS float64 `json:"offered_rps"`
	// Served and Goodput count requests that completed within the leg's
	// Duration (goodput: with TTFT <= SLO), per second of Duration.
	ServedRPS  float64 `json:"served_rps"`
	Goodput    int     `json:"goodput_requests"`
	GoodputRPS float64 `json:"goodput_rps"`
	GoodputCap float64 `json:"goodput_of_capacity"`
	// Backend503 counts the backends' own 503 "server busy" that reached a
	// client; BackendOther5xx other 5xx relayed from a backend.
	Backend503      int `json:"backend_503_to_clients"`
	BackendOther5xx int `json:"backend_other_5xx_to_clients"`
	// GatewayRefusals are Sluice's own 429/503 refusals.
	GatewayRefusals int `json:"gateway_refusals"`
	// OtherFailures: any other non-OK outcome (gateway or proxy 502/504,
	// client timeouts, broken streams).
	OtherFailures   int     `json:"other_failures"`
	Refusals        int     `json:"refusals"` // every 429/503 the clients saw
	RetryAfterShare float64 `json:"retry_after_share"`
	RefuseP50ms     float64 `json:"time_to_refuse_p50_ms"`
	RefuseP99ms     float64 `json:"time_to_refuse_p99_ms"`
	RefuseMaxms     float64 `json:"time_to_refuse_max_ms"`
	TTFTP50ms       float64 `json:"ttft_p50_ms"` // served requests
	TTFTP99ms       float64 `json:"ttft_p99_ms"`
	LagP99ms        float64 `json:"generator_lag_p99_ms"`
	KeptUp          bool    `json:"generator_kept_up"`
	WallS           float64 `json:"wall_s"`
	// Fairness scenario only.
	Tenants []TenantShare `json:"tenants,omitempty"`
	Jain    float64       `json:"jain_maxmin,omitempty"`
	// Diag is what the pool and the gateway reported during the arrivals.
	Diag Diagnostics `json:"diagnostics"`
	// Bench is the load generator's own result (records omitted).
	Bench *bench.Result `json:"bench"`
}

// TenantShare is one tenant's demand, max-min fair share and service.
type TenantShare struct {
	Name        string  `json:"name"`
	OfferedRPS  float64 `json:"offered_rps"`
	DemandTokS  float64 `json:"demand_output_tps"`
	FairTokS    float64 `json:"maxmin_fair_output_tps"`
	ServedTokS  float64 `json:"served_output_tps"`
	Ratio       float64 `json:"served_over_fair"` // min(1, served/fair)
	RefusedPct  float64 `json:"refused_share"`
	GoodputPct  float64 `json:"goodput_share"` // of offered
	TTFTP99ms   float64 `json:"ttft_p99_ms"`
	Backend503  int     `json:"backend_503"`
	ServedCount int     `json:"served"`
}

// Target is one of issue 3's targets and the measurement against it.
type Target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

// harness holds what every leg shares.
type harness struct {
	opt     options
	trace   []bench.Arrival // clamped and token-scaled, at trace speed
	capRPS  float64         // pool
	perSrv  float64
	meanP   float64
	meanO   float64
	meanN   int
	legs    int
	legsRun int
}

func run(ctx context.Context, opt options, out io.Writer) (*Report, error) {
	if opt.Backends < 1 || opt.Duration <= 0 || opt.SLO <= 0 || !(opt.TokenScale > 0) {
		return nil, errors.New("backends, duration, slo and token-scale must be positive")
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = opt.SLO
	}
	if opt.Sim == (sim.Config{}) {
		opt.Sim = simConfig()
	}
	opt.Sim.Model = "sim-model"
	start := time.Now()
	rep := &Report{Command: opt.Command, Machine: benchkit.ReadMachine(), Started: start.UTC()}

	h := &harness{opt: opt}
	if err := h.load(); err != nil {
		return nil, err
	}
	rep.Setup = h.setup()
	if opt.Replay {
		h.legs += 2 * len(opt.Loads)
	}
	if opt.Fairness {
		h.legs += 2
	}
	h.progress("pool capacity %.1f req/s (%d servers x %.2f) for mean prompt %.0f / output %.0f tokens; %d legs of %s",
		h.capRPS, opt.Backends, h.perSrv, h.meanP, h.meanO, h.legs, opt.Duration)

	if opt.Replay {
		for _, k := range opt.Loads {
			arr, ts, err := h.traceSlice(k)
			if err != nil {
				return nil, err
			}
			for _, path := range []string{pathRR, pathSluice} {
				leg, err := h.runLeg(ctx, "replay", k, path, arr, nil)
				if err != nil {
					return nil, err
				}
				leg.TimeScale = ts
				rep.Replay = append(rep.Replay, leg)
			}
		}
	}
	if opt.Fairness {
		arr, tenants, err := h.fairnessPlan()
		if err != nil {
			return nil, err
		}
		for _, path := range []string{pathRR, pathSluice} {
			leg, err := h.runLeg(ctx, "fairness", opt.Flood, path, arr, tenants)
			if err != nil {
				return nil, err
			}
			h.fairness(leg, arr, tenants)
			rep.Fairness = append(rep.Fairness, leg)
		}
	}
	rep.Targets = targets(rep)
	rep.Machine.LoadAfter = benchkit.Loadavg()
	rep.Elapsed = time.Since(start).Seconds()
	return rep, writeMarkdown(out, rep)
}

func (h *harness) progress(format string, args ...any) {
	if h.opt.Progress != nil {
		fmt.Fprintf(h.opt.Progress, format+"\n", args...)
	}
}

// load reads the trace and derives the pool's capacity for its mean
// request. The capacity depends on the mean over the requests the largest
// load replays, and that count depends on the capacity: a few rounds of
// fixed-point iteration settle it.
func (h *harness) load() error {
	o := h.opt
	scaled := func(n int) int { return max(int(math.Round(float64(n)*o.TokenScale)), 1) }
	tr, err := bench.LoadTrace(o.Trace, bench.TraceOptions{
		TokenScale: o.TokenScale, MaxInputTokens: scaled(o.MaxInput), MaxOutputTokens: scaled(o.MaxOutput)})
	if err != nil {
		return err
	}
	if len(tr) < 2 {
		return fmt.Errorf("trace %s: need at least 2 requests, got %d", o.Trace, len(tr))
	}
	h.trace = tr
	kmax := slices.Max(append([]float64{o.Flood}, o.Loads...))
	n := min(len(tr), 2000)
	for range 5 {
		h.meanN = n
		h.meanP, h.meanO = meanTokens(tr[:n])
		h.perSrv = benchkit.Capacity(o.Sim, h.meanP, h.meanO)
		h.capRPS = h.perSrv * float64(o.Backends)
		if !(h.capRPS > 0) {
			return fmt.Errorf("the simulator cannot serve the mean request (prompt %.0f, output %.0f)", h.meanP, h.meanO)
		}
		n = min(len(tr), max(int(math.Round(kmax*h.capRPS*o.Duration.Seconds())), 2))
	}
	return nil
}

func meanTokens(arr []bench.Arrival) (p, o float64) {
	for _, a := range arr {
		p += float64(a.InputTokens)
		o += float64(a.OutputTokens)
	}
	n := float64(len(arr))
	return p / n, o / n
}

func (h *harness) setup() Setup {
	o := h.opt
	maxIn, maxOut := 0, 0
	for _, a := range h.trace {
		maxIn, maxOut = max(maxIn, a.InputTokens), max(maxOut, a.OutputTokens)
	}
	kv := o.Sim.KVTokens
	if kv <= 0 {
		kv = 65536
	}
	slots := o.Sim.Slots
	if slots <= 0 {
		slots = 16
	}
	changes := []string{
		fmt.Sprintf("admission.max_wait: %s (the TTFT SLO; default 10s)", o.MaxWait),
		"expose_backend: true (adds X-Sluice-Backend to responses relayed from a backend, so the harness can tell a backend's 503 from Sluice's own refusal)",
		"log.access: false, shutdown_grace: 2s",
	}
	if o.MaxConc > 0 {
		changes = append(changes, fmt.Sprintf("models[0].backends[*].max_concurrency: %d (a static limit instead of the adaptive one)", o.MaxConc))
	}
	return Setup{
		Trace: o.Trace, TraceRows: len(h.trace), TokenScale: o.TokenScale,
		ClampInput: o.MaxInput, ClampOutput: o.MaxOutput, MaxInput: maxIn, MaxOutput: maxOut, MeanPrompt: h.meanP, MeanOutput: h.meanO, MeanOver: h.meanN,
		Backends: o.Backends, Sim: o.Sim, SlotBound: kv/max(maxIn+maxOut, 1) >= slots,
		CapacityRPS: h.capRPS, CapacityTokS: h.capRPS * h.meanO, PerServerRPS: h.perSrv,
		DurationS: o.Duration.Seconds(), SLOTTFTms: ms(o.SLO), SluiceChanges: changes,
		FloodX: o.Flood, BehaveX: o.Behave,
	}
}

// traceSlice plans the first requests of the trace at k x capacity: exactly
// round(k x capacity x Duration) requests, time-scaled so they span the
// leg's Duration. It returns the plan and the time scale.
func (h *harness) traceSlice(k float64) ([]bench.Arrival, float64, error) {
	d := h.opt.Duration
	n := max(int(math.Round(k*h.capRPS*d.Seconds())), 1)
	if n > len(h.trace) {
		return nil, 0, fmt.Errorf("%gx capacity for %s needs %d requests; the trace has %d (shorten --duration)", k, d, n, len(h.trace))
	}
	var span time.Duration
	if n < len(h.trace) {
		span = h.trace[n].At
	} else {
		span = h.trace[n-1].At + h.trace[n-1].At/time.Duration(max(n-1, 1))
	}
	if span <= 0 {
		return nil, 0, errors.New("trace: the requests planned all arrive at once")
	}
	ts := d.Seconds() / span.Seconds()
	return bench.Reshape(h.trace[:n], bench.TraceOptions{TimeScale: ts}), ts, nil
}

// fairnessPlan is one flooding tenant replaying the trace at Flood x
// capacity and Behaving tenants with Poisson arrivals at Behave x capacity
// each, their request sizes drawn from the same trace requests.
func (h *harness) fairnessPlan() ([]bench.Arrival, []bench.Tenant, error) {
	o := h.opt
	flood, _, err := h.traceSlice(o.Flood)
	if err != nil {
		return nil, nil, err
	}
	tenants := []bench.Tenant{{Name: "flood", APIKey: "sk-bench-flood"}}
	streams := [][]bench.Arrival{bench.WithTenant(flood, 0)}
	pool := h.trace[:h.meanN]
	for i := range o.Behaving {
		rng := rand.New(rand.NewPCG(o.Seed, uint64(i)+1))
		arr := bench.Poisson(rng, o.Behave*h.capRPS, o.Duration, 1, 1)
		for j := range arr {
			src := pool[rng.IntN(len(pool))]
			arr[j].InputTokens, arr[j].OutputTokens = src.InputTokens, src.OutputTokens
		}
		name := fmt.Sprintf("behaving-%d", i+1)
		tenants = append(tenants, bench.Tenant{Name: name, APIKey: "sk-bench-" + name})
		streams = append(streams, bench.WithTenant(arr, i+1))
	}
	return bench.Merge(streams...), tenants, nil
}

// runLeg starts fresh simulators and the path in front of them, replays arr
// and summarises the outcome.
func (h *harness) runLeg(ctx context.Context, scenario string, k float64, path string, arr []bench.Arrival, tenants []bench.Tenant) (*Leg, error) {
	o := h.opt
	h.legsRun++
	h.progress("[%d/%d] %s %gx via %s: %d requests over %s (load avg %s)",
		h.legsRun, h.legs, scenario, k, path, len(arr), o.Duration, benchkit.Loadavg())
	wall := time.Now()
	urls, stopSims, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", o.Backends, o.Sim, nil)
	if err != nil {
		return nil, err
	}
	defer stopSims()
	var target string
	var stop func()
	if path == pathSluice {
		cfg := demo.GatewayConfig(urls)
		cfg.ExposeBackend = true
		for i := range cfg.Models[0].Backends {
			cfg.Models[0].Backends[i].MaxConcurrency = o.MaxConc
		}
		target, stop, err = demo.StartGateway(ctx, &cfg, nil)
	} else {
		target, stop, err = demo.StartRoundRobin(urls)
	}
	if err != nil {
		return nil, err
	}
	defer stop()
	gw := ""
	if path == pathSluice {
		gw = target
	}
	smp := startSampler(ctx, urls, gw, max(o.Sim.Slots, 1), 250*time.Millisecond, o.Duration)
	res, err := bench.Run(ctx, bench.Config{
		Target: target, Model: "sim-model", Stream: true, Arrivals: arr, Tenants: tenants,
		Timeout: 60 * time.Second, SLOTTFT: o.SLO, Label: fmt.Sprintf("%s %gx %s", scenario, k, path),
		HeadersOfInterest: []string{hdrRetryAfter, hdrBackend},
	})
	diag := smp.finish(ctx)
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, ctx.Err()
	}
	leg := h.summarize(scenario, k, path, res)
	leg.Diag = diag
	leg.WallS = time.Since(wall).Seconds()
	h.progress("      goodput %.1f req/s (%.0f%% of capacity), backend 503 to clients %d, Sluice refusals %d, p99 TTFT %.0f ms",
		leg.GoodputRPS, 100*leg.GoodputCap, leg.Backend503, leg.GatewayRefusals, leg.TTFTP99ms)
	return leg, nil
}

// origin says where a non-2xx answer came from. Through Sluice, answers
// relayed from a backend carry X-Sluice-Backend and Sluice's own never do.
// The plain proxy never makes a 503 itself (it answers 502 when a backend
// cannot be reached), so every 503 through it is a backend's.
func fromBackend(path string, rec *bench.Record, hdr map[string]int) bool {
	if path == pathRR {
		return rec.Status == 503
	}
	return header(rec, hdr, hdrBackend) != ""
}

func header(rec *bench.Record, idx map[string]int, name string) string {
	if i, ok := idx[name]; ok && i < len(rec.Headers) {
		return rec.Headers[i]
	}
	return ""
}

func (h *harness) summarize(scenario string, k float64, path string, res *bench.Result) *Leg {
	d := h.opt.Duration
	leg := &Leg{Scenario: scenario, Load: k, Path: path, Requests: res.Planned, Bench: res,
		OfferedRPS: float64(res.Offered) / d.Seconds(), LagP99ms: res.Lag.P99, KeptUp: res.KeptUp}
	idx := map[string]int{hdrRetryAfter: 0, hdrBackend: 1} // HeadersOfInterest order
	var refuse, ttft []time.Duration
	var served, withRA int
	for i := range res.Records {
		rec := &res.Records[i]
		if rec.Dropped {
			leg.OtherFailures++
			continue
		}
		ended := rec.Planned + rec.Lag + rec.E2E
		if rec.OK() {
			if rec.TTFT > 0 {
				ttft = append(ttft, rec.TTFT)
			}
			if ended <= d {
				served++
				if rec.TTFT <= h.opt.SLO {
					leg.Goodput++
				}
			}
			continue
		}
		backend := fromBackend(path, rec, idx)
		if rec.Refused() {
			leg.Refusals++
			refuse = append(refuse, rec.E2E)
			if header(rec, idx, hdrRetryAfter) != "" {
				withRA++
			}
		}
		switch {
		case backend && rec.Status == 503:
			leg.Backend503++
		case backend && rec.Status >= 500:
			leg.BackendOther5xx++
		case !backend && rec.Refused():
			leg.GatewayRefusals++
		default:
			leg.OtherFailures++
		}
	}
	leg.ServedRPS = float64(served) / d.Seconds()
	leg.GoodputRPS = float64(leg.Goodput) / d.Seconds()
	leg.GoodputCap = leg.GoodputRPS / h.capRPS
	if leg.Refusals > 0 {
		leg.RetryAfterShare = float64(withRA) / float64(leg.Refusals)
	}
	leg.RefuseP50ms, leg.RefuseP99ms, leg.RefuseMaxms = pctl(refuse, 50), pctl(refuse, 99), pctl(refuse, 100)
	leg.TTFTP50ms, leg.TTFTP99ms = pctl(ttft, 50), pctl(ttft, 99)
	return leg
}

// pctl is the nearest-rank p-th percentile of ds in milliseconds (0 if
// empty); it sorts ds.
func pctl(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return ms(ds[min(max(rank, 1), len(ds))-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fairness fills leg.Tenants and leg.Jain.
//
// Definition: each tenant's demand is the output tokens it asked for; the
// pool's supply is the output tokens actually served in the leg (all
// tenants). The max-min fair share of each tenant is the water-filling of
// that supply over the demands (a tenant asking for less than an equal
// share gets all it asked for; the rest is split equally among the others).
// Jain's index is taken over x_i = min(1, served_i / fair_i): 1 when every
// tenant got at least its max-min share, falling towards 1/n as tenants are
// starved. The cap at 1 means serving the flood beyond its share is not
// itself unfair; taking it from the others shows in their ratios.
func (h *harness) fairness(leg *Leg, arr []bench.Arrival, tenants []bench.Tenant) {
	d := h.opt.Duration.Seconds()
	demand := make([]float64, len(tenants))
	offered := make([]int, len(tenants))
	for _, a := range arr {
		demand[a.Tenant] += float64(a.OutputTokens)
		offered[a.Tenant]++
	}
	backend503 := make([]int, len(tenants))
	idx := map[string]int{hdrRetryAfter: 0, hdrBackend: 1}
	for i := range leg.Bench.Records {
		rec := &leg.Bench.Records[i]
		if !rec.Dropped && rec.Status == 503 && fromBackend(leg.Path, rec, idx) {
			backend503[rec.Tenant]++
		}
	}
	var supply float64
	for _, t := range leg.Bench.Tenants {
		supply += float64(t.CompletionTokens)
	}
	fair := maxMinShares(supply, demand)
	x := make([]float64, len(tenants))
	for i, t := range leg.Bench.Tenants {
		x[i] = 1
		if fair[i] > 0 {
			x[i] = min(1, float64(t.CompletionTokens)/fair[i])
		}
		leg.Tenants = append(leg.Tenants, TenantShare{
			Name: t.Name, OfferedRPS: float64(offered[i]) / d,
			DemandTokS: demand[i] / d, FairTokS: fair[i] / d, ServedTokS: float64(t.CompletionTokens) / d,
			Ratio: x[i], RefusedPct: share(t.Refused, t.Offered), GoodputPct: share(t.Goodput, t.Offered),
			TTFTP99ms: t.TTFT.P99, Backend503: backend503[i], ServedCount: t.OK,
		})
	}
	leg.Jain = bench.JainIndex(x)
}

func share(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// maxMinShares water-fills supply over demands: the max-min fair
// allocation.
func maxMinShares(supply float64, demand []float64) []float64 {
	fair := make([]float64, len(demand))
	order := make([]int, 0, len(demand))
	for i, d := range demand {
		if d > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmpFloat(demand[a], demand[b]) })
	left := max(supply, 0)
	for n, i := range order {
		equal := left / float64(len(order)-n)
		fair[i] = min(demand[i], equal)
		left -= fair[i]
	}
	return fair
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// targets checks issue 3's targets on the Sluice leg at the highest replay
// load and on the Sluice fairness leg.
func targets(rep *Report) []Target {
	var ts []Target
	if top := topLeg(rep.Replay, pathSluice); top != nil {
		at := fmt.Sprintf(" (Sluice, %gx)", top.Load)
		ts = append(ts,
			Target{"no backend 503 reaches a client" + at, fmt.Sprintf("%d of %d requests", top.Backend503, top.Requests), top.Backend503 == 0},
			Target{"every refusal within 50 ms" + at, fmt.Sprintf("max %s, p99 %s over %d refusals", benchkit.MsText(top.RefuseMaxms), benchkit.MsText(top.RefuseP99ms), top.Refusals),
				top.RefuseMaxms <= ms(targetRefuse)},
			Target{"every refusal carries Retry-After" + at, fmt.Sprintf("%.1f%% of %d", 100*top.RetryAfterShare, top.Refusals),
				top.Refusals == 0 || top.RetryAfterShare == 1},
			Target{"goodput >= 90% of capacity" + at, fmt.Sprintf("%.1f%% (%.1f of %.1f req/s)", 100*top.GoodputCap, top.GoodputRPS, rep.Setup.CapacityRPS),
				top.GoodputCap >= targetGoodput},
		)
	}
	for _, l := range rep.Fairness {
		if l.Path == pathSluice {
			ts = append(ts, Target{"Jain's index >= 0.95 (Sluice, fairness)", fmt.Sprintf("%.3f", l.Jain), l.Jain >= targetJain})
		}
	}
	return ts
}

// topLeg is the leg of path at the highest load, or nil.
func topLeg(legs []*Leg, path string) *Leg {
	var top *Leg
	for _, l := range legs {
		if l.Path == path && (top == nil || l.Load > top.Load) {
			top = l
		}
	}
	return top
}

func writeMarkdown(w io.Writer, rep *Report) error {
	ew := &benchkit.ErrWriter{W: w}
	p := ew.Printf
	s := rep.Setup
	p("## Overload: trace replay at 1x-3x capacity, round robin vs Sluice\n\n")
	ew.Header(rep.Command, rep.Machine, rep.Started, rep.Elapsed)
	p("- Trace: `%s` (Azure LLM inference trace, conversation, 2023; Patel et al., \"Splitwise\", ISCA 2024; CC-BY-4.0), %d requests. "+
		"Token counts scaled by %g and clamped to %d prompt / %d output tokens (%d / %d before scaling), so the simulators run on a small machine. "+
		"Each leg replays the first round(k x capacity x %gs) requests, time-scaled so they span %gs: the mean rate is exactly k x capacity and the trace's burstiness is kept.\n",
		s.Trace, s.TraceRows, s.TokenScale, s.MaxInput, s.MaxOutput, s.ClampInput, s.ClampOutput, s.DurationS, s.DurationS)
	sc := s.Sim
	p("- Pool: %d simulators (`internal/sim`), each %d slots, KV %d tokens, waiting queue %d (then 503 `server_busy`, no Retry-After), prefill %.0f tok/s, decode step %s + %s per sequence.",
		s.Backends, sc.Slots, sc.KVTokens, sc.MaxWaiting, sc.PrefillTokensPerSec, sc.DecodeStepBase, sc.DecodeStepPerSeq)
	if !s.SlotBound {
		p(" Note: the longest requests are KV-bound; the capacity below is then approximate.")
	}
	p("\n- Capacity (`sim.Config.Capacity` for the mean request of the replayed slice, %.1f prompt / %.1f output tokens over its first %d requests): %.2f req/s per server, **%.1f req/s** and %.0f output tokens/s for the pool.\n",
		s.MeanPrompt, s.MeanOutput, s.MeanOver, s.PerServerRPS, s.CapacityRPS, s.CapacityTokS)
	p("- Sluice: `config.Default()` except %s.\n", strings.Join(s.SluiceChanges, "; "))
	p("- Round robin: Go's `httputil.ReverseProxy` rotating over the backends, passing every answer through (`internal/demo`).\n")
	p("- Every leg starts fresh simulators and a fresh proxy or gateway. Streaming requests, one client per leg, open loop.\n")
	p("- Goodput: requests completed within the leg's %gs with TTFT <= %s, per second of the leg; %% of the pool's capacity in req/s. "+
		"Served: all requests completed within the leg, per second. Time to refuse: end-to-end time of every 429/503 a client saw. "+
		"Backend 503: a backend's own `server_busy` relayed to the client (through Sluice: a 503 with X-Sluice-Backend).\n\n",
		s.DurationS, time.Duration(s.SLOTTFTms*float64(time.Millisecond)))

	if len(rep.Replay) > 0 {
		p("### Trace replay\n\n")
		p("| load | path | offered req/s | served req/s | goodput req/s | goodput %% of capacity | backend 503 to clients | Sluice refusals | other failures | refusals with Retry-After | time to refuse p50 / p99 / max | p99 TTFT (served) |\n")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, l := range rep.Replay {
			ra := "-"
			if l.Refusals > 0 {
				ra = fmt.Sprintf("%.0f%% of %d", 100*l.RetryAfterShare, l.Refusals)
			}
			refuse := "-"
			if l.Refusals > 0 {
				refuse = fmt.Sprintf("%s / %s / %s", benchkit.MsText(l.RefuseP50ms), benchkit.MsText(l.RefuseP99ms), benchkit.MsText(l.RefuseMaxms))
			}
			p("| %gx | %s | %.1f | %.1f | %.1f | %.0f%% | %d | %d | %d | %s | %s | %s |\n",
				l.Load, l.Path, l.OfferedRPS, l.ServedRPS, l.GoodputRPS, 100*l.GoodputCap,
				l.Backend503, l.GatewayRefusals, l.OtherFailures, ra, refuse, benchkit.MsText(l.TTFTP99ms))
		}
		p("\n")
		if rr := topLeg(rep.Replay, pathRR); rr != nil {
			p("Ceiling: at %gx the round-robin leg keeps %.0f%% of the pool's slots busy and completes %.1f req/s within the leg, %.0f%% of the formula's capacity. "+
				"That is what the simulators delivered on this machine by this measure (timer overshoot on a shared machine, warm-up and requests still running at the end of the leg), so goodput cannot exceed it here.\n\n",
				rr.Load, 100*rr.Diag.BatchOccupancy, rr.ServedRPS, 100*rr.ServedRPS/s.CapacityRPS)
		}
		lagNote(ew, rep.Replay)
	}
	if len(rep.Fairness) > 0 {
		f := rep.Fairness[0]
		p("### Fairness: one tenant floods, %d behave\n\n", len(f.Tenants)-1)
		p("The flood replays the trace at %gx capacity; each well-behaved tenant sends Poisson arrivals at %gx capacity with request sizes drawn from the same trace. Tenants are API keys (`Authorization: Bearer ...`), unknown to Sluice, so each is its own tenant with weight 1. "+
			"Max-min fair share: the output tokens served in the leg (all tenants) water-filled over the tenants' demands. "+
			"Jain's index over min(1, served / fair share) per tenant: 1 when every tenant got at least its max-min share.\n\n",
			s.FloodX, s.BehaveX)
		p("| tenant | offered req/s | demand out tok/s |")
		for _, l := range rep.Fairness {
			p(" %s: fair share | served tok/s | served / fair | refused | goodput | p99 TTFT |", l.Path)
		}
		p("\n|---|--:|--:|")
		for range rep.Fairness {
			p("--:|--:|--:|--:|--:|--:|")
		}
		p("\n")
		for i, t := range f.Tenants {
			p("| %s | %.1f | %.0f |", t.Name, t.OfferedRPS, t.DemandTokS)
			for _, l := range rep.Fairness {
				u := l.Tenants[i]
				p(" %.0f | %.0f | %.0f%% | %.0f%% | %.0f%% | %s |", u.FairTokS, u.ServedTokS, 100*u.Ratio, 100*u.RefusedPct, 100*u.GoodputPct, benchkit.MsText(u.TTFTP99ms))
			}
			p("\n")
		}
		p("| **Jain's index** | | |")
		for _, l := range rep.Fairness {
			p(" | | **%.3f** | | | |", l.Jain)
		}
		p("\n\n")
		for _, l := range rep.Fairness {
			p("- %s: %d backend 503 reached clients, %d Sluice refusals, %d other failures; goodput %.1f req/s.\n",
				l.Path, l.Backend503, l.GatewayRefusals, l.OtherFailures, l.GoodputRPS)
		}
		p("\n")
		lagNote(ew, rep.Fairness)
	}
	if legs := append(slices.Clone(rep.Replay), rep.Fairness...); len(legs) > 0 {
		p("### Diagnostics (sampled from /metrics every 250 ms during the arrivals)\n\n")
		p("| scenario | load | path | pool slots busy | backend queue (mean) | Sluice limit: mean [min-max] slots | Sluice queue (mean) | Sluice refusals by reason | Sluice retries |\n")
		p("|---|---|---|--:|--:|--:|--:|---|--:|\n")
		for _, l := range legs {
			d := l.Diag
			limit, queued, retries := "-", "-", "-"
			if l.Path == pathSluice {
				limit = fmt.Sprintf("%.1f [%.0f-%.0f]", d.LimitMean, d.LimitMin, d.LimitMax)
				queued = fmt.Sprintf("%.1f", d.GatewayQueued)
				retries = fmt.Sprintf("%.0f", d.Retries)
			}
			p("| %s | %gx | %s | %.0f%% | %.1f | %s | %s | %s | %s |\n", l.Scenario, l.Load, l.Path,
				100*d.BatchOccupancy, d.BackendWaiting, limit, queued, d.rejectionText(), retries)
		}
		p("\nThe pool has %d slots (%d per server); its capacity assumes all of them decode all the time.\n\n",
			rep.Setup.Backends*rep.Setup.Sim.Slots, rep.Setup.Sim.Slots)
	}
	if len(rep.Targets) > 0 {
		p("### Targets (issue 3)\n\n| target | measured | result |\n|---|---|---|\n")
		for _, t := range rep.Targets {
			r := "**FAIL**"
			if t.Pass {
				r = "pass"
			}
			p("| %s | %s | %s |\n", t.Name, t.Measured, r)
		}
		p("\n")
	}
	return ew.Err
}

// lagNote flags legs whose load generator fell behind its plan.
func lagNote(ew *benchkit.ErrWriter, legs []*Leg) {
	var behind []string
	for _, l := range legs {
		if !l.KeptUp {
			behind = append(behind, fmt.Sprintf("%s %gx %s (lag p99 %s)", l.Scenario, l.Load, l.Path, benchkit.MsText(l.LagP99ms)))
		}
	}
	if len(behind) > 0 {
		ew.Printf("The load generator fell behind its plan (lag p99 >= 50 ms) in: %s. The machine was busy; treat those legs' latencies with care.\n\n", strings.Join(behind, "; "))
	} else {
		ew.Printf("The load generator kept up with its plan in every leg (lag p99 < 50 ms).\n\n")
	}
}

// Diagnostics are what the pool and the gateway reported about themselves
// during a leg's arrivals (their /metrics, sampled), to explain its figures.
type Diagnostics struct {
	Samples int `json:"samples"`
	// BatchOccupancy is the mean share of the pool's slots decoding.
	BatchOccupancy float64 `json:"batch_occupancy"`
	// BackendWaiting is the mean number of requests in the backends' own
	// waiting queues, summed over the pool.
	BackendWaiting float64 `json:"backend_waiting"`
	// Limit* describe sluice_queue_capacity, the sum of the backends'
	// concurrency limits (Sluice legs only).
	LimitMean float64 `json:"limit_mean,omitempty"`
	LimitMin  float64 `json:"limit_min,omitempty"`
	LimitMax  float64 `json:"limit_max,omitempty"`
	// GatewayQueued is the mean number of requests waiting in Sluice's queue.
	GatewayQueued float64 `json:"gateway_queued,omitempty"`
	// Rejections counts Sluice's queue refusals by reason at the end of the
	// leg; Retries its upstream retries.
	Rejections map[string]float64 `json:"rejections,omitempty"`
	Retries    float64            `json:"retries,omitempty"`
}

// sampler polls the simulators' and the gateway's /metrics while a leg's
// arrivals run.
type sampler struct {
	sims    []string
	gateway string // "" for the round-robin path
	slots   int
	client  *http.Client

	mu                        sync.Mutex
	n, gn                     int
	running, waiting, lim, gq float64
	limMin, limMax            float64
	done                      chan struct{}
	wg                        sync.WaitGroup
}

func startSampler(ctx context.Context, sims []string, gateway string, slots int, every, until time.Duration) *sampler {
	s := &sampler{sims: sims, gateway: gateway, slots: slots, done: make(chan struct{}),
		client: &http.Client{Timeout: every}}
	s.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		end := time.After(until)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.done:
				return
			case <-end:
				return
			case <-tick.C:
				s.sample(ctx)
			}
		}
	})
	return s
}

func (s *sampler) sample(ctx context.Context) {
	var running, waiting float64
	for _, u := range s.sims {
		m := benchkit.Scrape(ctx, s.client, u+"/metrics")
		if m == nil {
			return // a missed sample, not a zero one
		}
		running += benchkit.Sum(m, "vllm:num_requests_running")
		waiting += benchkit.Sum(m, "vllm:num_requests_waiting")
	}
	var g []benchkit.Metric
	if s.gateway != "" {
		if g = benchkit.Scrape(ctx, s.client, s.gateway+"/metrics"); g == nil {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.running += running
	s.waiting += waiting
	if g != nil {
		l := benchkit.Sum(g, "sluice_queue_capacity")
		if s.gn == 0 || l < s.limMin {
			s.limMin = l
		}
		s.limMax = max(s.limMax, l)
		s.gn++
		s.lim += l
		s.gq += benchkit.Sum(g, "sluice_queue_waiting")
	}
}

// finish stops sampling and reads the gateway's final counters.
func (s *sampler) finish(ctx context.Context) Diagnostics {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := Diagnostics{Samples: s.n}
	if s.n > 0 {
		d.BatchOccupancy = s.running / float64(s.n*s.slots*len(s.sims))
		d.BackendWaiting = s.waiting / float64(s.n)
	}
	if s.gn > 0 {
		d.LimitMean, d.LimitMin, d.LimitMax = s.lim/float64(s.gn), s.limMin, s.limMax
		d.GatewayQueued = s.gq / float64(s.gn)
	}
	if s.gateway != "" {
		g := benchkit.Scrape(ctx, s.client, s.gateway+"/metrics")
		d.Rejections = map[string]float64{}
		for _, m := range g {
			if m.Name == "sluice_queue_rejections_total" && m.Value > 0 {
				d.Rejections[benchkit.Label(m.Labels, "reason")] += m.Value
			}
		}
		d.Retries = benchkit.Sum(g, "sluice_retries_total")
	}
	return d
}

// rejectionText lists rejections by reason, largest first.
func (d Diagnostics) rejectionText() string {
	if len(d.Rejections) == 0 {
		return "-"
	}
	keys := slices.Collect(maps.Keys(d.Rejections))
	slices.SortFunc(keys, func(a, b string) int { return cmpFloat(d.Rejections[b], d.Rejections[a]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+strconv.FormatFloat(d.Rejections[k], 'f', 0, 64))
	}
	return strings.Join(parts, ", ")
}
