package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/sim"
)

// The replay and fairness scenarios (issue 3, section 6): round robin vs
// Sluice on the first trace at 1x-3x capacity, and one flooding tenant
// beside three well-behaved ones.

// Paths a replay or fairness leg's load can take to the pool.
const pathRR = "round robin"

// Targets of issue 3 at 3x capacity.
const (
	targetRefuse  = 50 * time.Millisecond
	targetGoodput = 0.90
	targetJain    = 0.95
)

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

// harness holds what every replay and fairness leg shares.
type harness struct {
	opt options
	*pool
	progress *benchkit.Progress // its own leg count
}

// sluicePath names the Sluice path: the defaults, or a tuned static limit
// said in the same row.
func (h *harness) sluicePath() string {
	if h.opt.MaxConc > 0 {
		return fmt.Sprintf("Sluice (tuned: static max_concurrency %d)", h.opt.MaxConc)
	}
	return "Sluice"
}

// runReplay runs the replay and fairness scenarios into rep.
func runReplay(ctx context.Context, opt options, rep *Report) error {
	h := &harness{opt: opt, progress: &benchkit.Progress{W: opt.Progress}}
	if err := h.load(); err != nil {
		return err
	}
	setup := h.setup()
	rep.Setup = &setup
	if opt.Replay {
		h.progress.Legs += 2 * len(opt.Loads)
	}
	if opt.Fairness {
		h.progress.Legs += 2
	}
	h.progress.Printf("replay: pool capacity %.1f req/s (%d servers x %.2f) for mean prompt %.0f / output %.0f tokens; %d legs of %s",
		h.capRPS, opt.Backends, h.perSrv, h.meanP, h.meanO, h.progress.Legs, opt.Duration)

	if opt.Replay {
		for _, k := range opt.Loads {
			arr, ts, err := h.traceSlice(k)
			if err != nil {
				return err
			}
			for _, path := range []string{pathRR, h.sluicePath()} {
				leg, err := h.runLeg(ctx, "replay", k, path, arr, nil)
				if err != nil {
					return err
				}
				leg.TimeScale = ts
				rep.Replay = append(rep.Replay, leg)
			}
		}
	}
	if opt.Fairness {
		arr, tenants, err := h.fairnessPlan()
		if err != nil {
			return err
		}
		for _, path := range []string{pathRR, h.sluicePath()} {
			leg, err := h.runLeg(ctx, "fairness", opt.Flood, path, arr, tenants)
			if err != nil {
				return err
			}
			h.fairness(leg, arr, tenants)
			rep.Fairness = append(rep.Fairness, leg)
		}
	}
	rep.Targets = targets(rep)
	return nil
}

// load reads the first trace for the largest replay or fairness load.
func (h *harness) load() error {
	kmax := slices.Max(append([]float64{h.opt.Flood}, h.opt.Loads...))
	p, err := loadPool(h.opt, h.opt.Traces[0], kmax*h.opt.Duration.Seconds())
	h.pool = p
	return err
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
		"expose_backend: true (adds X-Sluice-Backend to responses relayed from a backend, so the harness can tell a backend's 503 from Sluice's own refusal)",
		"log.access: false, shutdown_grace: 2s",
	}
	if o.MaxConc > 0 {
		changes = append(changes, fmt.Sprintf("tuned: models[0].backends[*].max_concurrency: %d (a static limit instead of the adaptive one)", o.MaxConc))
	}
	return Setup{
		Trace: h.Path, TraceRows: len(h.trace), TokenScale: o.TokenScale,
		ClampInput: o.MaxInput, ClampOutput: o.MaxOutput, MaxInput: maxIn, MaxOutput: maxOut, MeanPrompt: h.meanP, MeanOutput: h.meanO, MeanOver: h.meanN,
		Backends: o.Backends, Sim: o.Sim, SlotBound: kv/max(maxIn+maxOut, 1) >= slots,
		CapacityRPS: h.capRPS, CapacityTokS: h.capRPS * h.meanO, PerServerRPS: h.perSrv,
		DurationS: o.Duration.Seconds(), SLOTTFTms: ms(o.SLO), SluiceChanges: changes,
		FloodX: o.Flood, BehaveX: o.Behave,
	}
}

// traceSlice plans the first requests of the trace at k x capacity for the
// leg's Duration (pool.plan). It returns the plan and the time scale.
func (h *harness) traceSlice(k float64) ([]bench.Arrival, float64, error) {
	arr, ts, _, err := h.plan(0, k, h.opt.Duration)
	return arr, ts, err
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
	h.progress.Leg("%s %gx via %s: %d requests over %s", scenario, k, path, len(arr), o.Duration)
	wall := time.Now()
	rig, err := startRig(ctx, o, regimeShed, path, o.MaxConc, tenants)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	smp := rig.Sample(ctx, sampleEvery, o.Duration)
	rc := newRunConfig(o, rig.Targets[0], fmt.Sprintf("%s %gx %s", scenario, k, path), arr)
	rc.Tenants = tenants
	rc.Timeout = 60 * time.Second // as issue 3 measured it; --client-timeout is the goodput legs'
	res, err := bench.Run(ctx, rc)
	diag := diagnostics(ctx, smp.Finish(), o.Backends*max(o.Sim.Slots, 1), rig.Admins)
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, ctx.Err()
	}
	leg := h.summarize(scenario, k, path, res)
	leg.Diag = diag
	leg.WallS = time.Since(wall).Seconds()
	h.progress.Printf("      goodput %.1f req/s (%.0f%% of capacity), backend 503 to clients %d, Sluice refusals %d, p99 TTFT %.0f ms",
		leg.GoodputRPS, 100*leg.GoodputCap, leg.Backend503, leg.GatewayRefusals, leg.TTFTP99ms)
	return leg, nil
}

// origin says where a non-2xx answer came from. Through Sluice, answers
// relayed from a backend carry X-Sluice-Backend and Sluice's own never do.
// The plain proxy never makes a 503 itself (it answers 502 when a backend
// cannot be reached), so every 503 through it is a backend's.
func fromBackend(path string, rec *bench.Record) bool {
	if path == pathRR {
		return rec.Status == 503
	}
	return header(rec, hdrBackend) != ""
}

// header is a recorded response header (interest), "" when absent.
func header(rec *bench.Record, name string) string {
	if i, ok := hdrIndex[name]; ok && i < len(rec.Headers) {
		return rec.Headers[i]
	}
	return ""
}

func (h *harness) summarize(scenario string, k float64, path string, res *bench.Result) *Leg {
	d := h.opt.Duration
	leg := &Leg{Scenario: scenario, Load: k, Path: path, Requests: res.Planned, Bench: res,
		OfferedRPS: float64(res.Offered) / d.Seconds(), LagP99ms: res.Lag.P99, KeptUp: res.KeptUp}
	var refuse, ttft []time.Duration
	var served, withRA int
	for i := range res.Records {
		rec := &res.Records[i]
		if rec.Dropped {
			leg.OtherFailures++
			continue
		}
		ended := benchkit.Ended(rec)
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
		backend := fromBackend(path, rec)
		if rec.Refused() {
			leg.Refusals++
			refuse = append(refuse, rec.E2E)
			if header(rec, hdrRetryAfter) != "" {
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
	pctl := benchkit.PercentileMs
	leg.RefuseP50ms, leg.RefuseP99ms, leg.RefuseMaxms = pctl(refuse, 50), pctl(refuse, 99), pctl(refuse, 100)
	leg.TTFTP50ms, leg.TTFTP99ms = pctl(ttft, 50), pctl(ttft, 99)
	return leg
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
	for i := range leg.Bench.Records {
		rec := &leg.Bench.Records[i]
		if !rec.Dropped && rec.Status == 503 && fromBackend(leg.Path, rec) {
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
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(demand[a], demand[b]) })
	left := max(supply, 0)
	for n, i := range order {
		equal := left / float64(len(order)-n)
		fair[i] = min(demand[i], equal)
		left -= fair[i]
	}
	return fair
}

// targets checks issue 3's targets on the Sluice leg at the highest replay
// load and on the Sluice fairness leg.
func targets(rep *Report) []Target {
	var ts []Target
	if top := topLeg(rep.Replay, false); top != nil {
		at := fmt.Sprintf(" (%s, %gx)", top.Path, top.Load)
		ts = append(ts,
			Target{Name: "no backend 503 reaches a client" + at, Measured: fmt.Sprintf("%d of %d requests", top.Backend503, top.Requests), Pass: top.Backend503 == 0},
			Target{Name: "every refusal within 50 ms" + at, Measured: fmt.Sprintf("max %s, p99 %s over %d refusals", benchkit.MsText(top.RefuseMaxms), benchkit.MsText(top.RefuseP99ms), top.Refusals),
				Pass: top.RefuseMaxms <= ms(targetRefuse)},
			Target{Name: "every refusal carries Retry-After" + at, Measured: fmt.Sprintf("%.1f%% of %d", 100*top.RetryAfterShare, top.Refusals),
				Pass: top.Refusals == 0 || top.RetryAfterShare == 1},
			Target{Name: "goodput >= 90% of capacity" + at, Measured: fmt.Sprintf("%.1f%% (%.1f of %.1f req/s)", 100*top.GoodputCap, top.GoodputRPS, rep.Setup.CapacityRPS),
				Pass: top.GoodputCap >= targetGoodput},
		)
	}
	for _, l := range rep.Fairness {
		if l.Path != pathRR {
			ts = append(ts, Target{Name: "Jain's index >= 0.95 (" + l.Path + ", fairness)", Measured: fmt.Sprintf("%.3f", l.Jain), Pass: l.Jain >= targetJain})
		}
	}
	return ts
}

// topLeg is the round-robin (rr) or Sluice leg at the highest load, or nil.
func topLeg(legs []*Leg, rr bool) *Leg {
	var top *Leg
	for _, l := range legs {
		if (l.Path == pathRR) == rr && (top == nil || l.Load > top.Load) {
			top = l
		}
	}
	return top
}
