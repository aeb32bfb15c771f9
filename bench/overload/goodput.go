package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/sim"
)

// The goodput scenario (issue 10): requests answered within the SLO, with
// Sluice's defaults, next to round robin, on real traces.

// sweepLoad is the load of the static-limit sweep, x capacity.
const sweepLoad = 2

// GoodputReport is the goodput scenario's part of the report.
type GoodputReport struct {
	Traces         []TraceSetup  `json:"traces"`
	Regimes        []RegimeSetup `json:"regimes"`
	Backends       int           `json:"backends"`
	Sim            sim.Config    `json:"sim"` // the shed regime; unbounded differs in max_waiting
	TokenScale     float64       `json:"token_scale"`
	ClampInput     int           `json:"clamp_input_tokens"`  // before scaling
	ClampOutput    int           `json:"clamp_output_tokens"` // before scaling
	DurationS      float64       `json:"leg_duration_s"`
	SLOms          float64       `json:"slo_ttft_ms"`
	ClientTimeoutS float64       `json:"client_timeout_s"`
	Runs           int           `json:"runs"`
	Legs           []*GLeg       `json:"legs"`
	Sweep          *Sweep        `json:"sweep,omitempty"`
	Honesty        *Honesty      `json:"honesty,omitempty"`
	Targets        []Target      `json:"targets"`
}

// TraceSetup is one trace and the pool's capacity for it.
type TraceSetup struct {
	Path         string  `json:"path"`
	Name         string  `json:"name"`
	Rows         int     `json:"rows"`
	MeanPrompt   float64 `json:"mean_prompt_tokens"` // after clamping and scaling
	MeanOutput   float64 `json:"mean_output_tokens"`
	MeanOver     int     `json:"mean_over_requests"`
	PerServerRPS float64 `json:"per_server_rps"`
	CapacityRPS  float64 `json:"capacity_rps"`
}

// RegimeSetup is one simulator regime.
type RegimeSetup struct {
	Name       string `json:"name"`
	MaxWaiting int    `json:"max_waiting"`
}

// GLeg is one goodput leg over its runs. Counts of refusals and failures
// are totals over the runs; percentiles pool the runs' requests.
type GLeg struct {
	Trace     string  `json:"trace"`
	Load      float64 `json:"load_x_capacity"`
	Regime    string  `json:"regime"`
	Path      string  `json:"path"`
	Tuned     int     `json:"tuned_max_concurrency,omitempty"` // 0: Sluice's defaults
	Requests  int     `json:"requests_per_run"`
	TimeScale float64 `json:"trace_time_scale"`
	// InSLO is the median over runs of the requests answered within the
	// SLO; InSLORuns the runs' values, in order.
	InSLO     float64 `json:"answered_in_slo_median"`
	InSLORuns []int   `json:"answered_in_slo_runs"`
	TTFTP50ms float64 `json:"ttft_p50_ms"`
	TTFTP99ms float64 `json:"ttft_p99_ms"`
	Refusals
	Dropped int `json:"dropped_by_generator,omitempty"`
	// Utilisation: means over runs (UtilQueued over the runs whose gateway
	// queue ever held requests).
	Util         float64    `json:"slot_utilisation"`
	UtilQueued   float64    `json:"slot_utilisation_while_queued"`
	QueuedShare  float64    `json:"gateway_queue_nonempty_share"`
	DelayTargetS *float64   `json:"queue_delay_target_s,omitempty"`
	KeptUp       bool       `json:"generator_kept_up"`
	Why          *Why       `json:"why,omitempty"` // means over the runs
	Runs         []*Outcome `json:"runs"`
}

// Name is the leg's path as the tables show it.
func (l *GLeg) Name() string { return pathName(l.Path, l.Tuned) }

// aggregate fills the leg's figures from its runs.
func (l *GLeg) aggregate() {
	var inSLO []float64
	var ttft, refA, refQ []time.Duration
	var utilQ []float64
	l.InSLORuns, l.Refusals, l.KeptUp = nil, Refusals{UnannouncedBy: map[string]int{}}, true
	l.Util, l.QueuedShare = 0, 0
	for _, r := range l.Runs {
		l.InSLORuns = append(l.InSLORuns, r.InSLO)
		inSLO = append(inSLO, float64(r.InSLO))
		ttft, refA, refQ = append(ttft, r.ttft...), append(refA, r.refArrival...), append(refQ, r.refQueued...)
		l.Refusals.add(r.Refusals)
		l.Dropped += r.DroppedByGenerator
		l.Util += r.Util / float64(len(l.Runs))
		l.QueuedShare += r.QueuedShare / float64(len(l.Runs))
		if r.QueuedShare > 0 {
			utilQ = append(utilQ, r.UtilQueued)
		}
		if r.DelayTargetS != nil && (l.DelayTargetS == nil || *r.DelayTargetS > *l.DelayTargetS) {
			l.DelayTargetS = r.DelayTargetS
		}
		l.KeptUp = l.KeptUp && r.KeptUp
	}
	l.InSLO = benchkit.Median(inSLO)
	l.TTFTP50ms, l.TTFTP99ms = benchkit.PercentileMs(ttft, 50), benchkit.PercentileMs(ttft, 99)
	l.RefuseArrivalP99ms, l.RefuseQueuedP99ms = benchkit.PercentileMs(refA, 99), benchkit.PercentileMs(refQ, 99)
	for _, u := range utilQ {
		l.UtilQueued += u / float64(len(utilQ))
	}
	l.Why = meanWhy(l.Runs)
}

// Sweep is the static-limit sweep: the best a hand-tuned static
// max_concurrency does, against the adaptive default.
type Sweep struct {
	Trace  string  `json:"trace"`
	Load   float64 `json:"load_x_capacity"`
	Regime string  `json:"regime"`
	Points []*GLeg `json:"points"`
	// Knee is the static limit with the most requests answered in the SLO.
	Knee      int     `json:"knee_max_concurrency"`
	KneeInSLO float64 `json:"knee_answered_in_slo"`
	// Adaptive is the default Sluice leg at the same trace, load and regime:
	// taken from the goodput legs, or run here (then AdaptiveLeg is set).
	AdaptiveInSLO float64 `json:"adaptive_answered_in_slo"`
	Ratio         float64 `json:"adaptive_over_knee"`
	AdaptiveLeg   *GLeg   `json:"adaptive_leg,omitempty"`
	// Trajectory is the adaptive leg's sluice_queue_capacity, one value per
	// second (its first run).
	Trajectory []float64 `json:"adaptive_limit_per_s"`
}

// gharness runs goodput legs.
type gharness struct {
	opt      options
	progress *benchkit.Progress
}

func runGoodput(ctx context.Context, o options) (*GoodputReport, error) {
	g := &GoodputReport{Backends: o.Backends, Sim: o.Sim, TokenScale: o.TokenScale, ClampInput: o.MaxInput, ClampOutput: o.MaxOutput,
		DurationS: o.GoodputDuration.Seconds(), SLOms: ms(o.SLO), ClientTimeoutS: o.ClientTimeout.Seconds(), Runs: o.Runs}
	for _, r := range o.Regimes {
		g.Regimes = append(g.Regimes, RegimeSetup{Name: r, MaxWaiting: regimeSim(o, r).MaxWaiting})
	}
	h := &gharness{opt: o, progress: o.prog}
	pools, err := h.loadPools(g)
	if err != nil {
		return nil, err
	}
	paths := goodputPaths(o)
	h.progress.Legs = (len(pools)*len(o.GoodputLoads)*len(o.Regimes)*len(paths) + len(o.Sweep)) * o.Runs
	for _, p := range pools {
		for _, k := range o.GoodputLoads {
			legs, err := h.runLoad(ctx, p, k, paths)
			if err != nil {
				return nil, err
			}
			g.Legs = append(g.Legs, legs...)
		}
	}
	if len(o.Sweep) > 0 {
		if g.Sweep, err = h.sweep(ctx, pools[0], g.Legs); err != nil {
			return nil, err
		}
	}
	if o.Honesty {
		if g.Honesty, err = runHonesty(ctx, o, pools[0]); err != nil {
			return nil, err
		}
	}
	g.Targets = goodputTargets(g)
	return g, nil
}

// loadPools reads every trace into g.Traces. Each trace's capacity is for
// the mean request of the most it replays: the largest load, and for the
// first trace also the sweep and the honesty test.
func (h *gharness) loadPools(g *GoodputReport) ([]*pool, error) {
	o := h.opt
	d := o.GoodputDuration.Seconds()
	pools := make([]*pool, len(o.Traces))
	for i, path := range o.Traces {
		need := slices.Max(append([]float64{0}, o.GoodputLoads...)) * d
		if i == 0 {
			if len(o.Sweep) > 0 {
				need = max(need, sweepLoad*d)
			}
			if o.Honesty {
				need = max(need, honestyBurstX*honestyBurst.Seconds()+honestyCalmX*honestyCalm.Seconds())
			}
		}
		p, err := loadPool(o, path, need)
		if err != nil {
			return nil, err
		}
		pools[i] = p
		g.Traces = append(g.Traces, TraceSetup{Path: path, Name: traceName(path), Rows: len(p.trace),
			MeanPrompt: p.meanP, MeanOutput: p.meanO, MeanOver: p.meanN, PerServerRPS: p.perSrv, CapacityRPS: p.capRPS})
		h.progress.Printf("goodput: %s: pool capacity %.1f req/s (%d servers x %.2f) for mean prompt %.0f / output %.0f tokens",
			traceName(path), p.capRPS, o.Backends, p.perSrv, p.meanP, p.meanO)
	}
	return pools, nil
}

// pathRun is a path of the goodput legs: one of the path constants, tuned
// to a static max_concurrency when tuned > 0.
type pathRun struct {
	path  string
	tuned int
}

// goodputPaths are the paths every goodput load runs through.
func goodputPaths(o options) []pathRun {
	paths := []pathRun{{pathSluice, 0}}
	if !o.NoDirect {
		paths = append([]pathRun{{pathDirect, 0}}, paths...)
	}
	if o.Replicas2 {
		paths = append(paths, pathRun{pathSluice2, 0})
	}
	if o.MaxConc > 0 {
		paths = append(paths, pathRun{pathSluice, o.MaxConc})
	}
	return paths
}

// runLoad runs the legs of one trace at load k: every regime, every path,
// o.Runs times each.
func (h *gharness) runLoad(ctx context.Context, p *pool, k float64, paths []pathRun) ([]*GLeg, error) {
	arr, ts, _, err := p.plan(0, k, h.opt.GoodputDuration)
	if err != nil {
		return nil, err
	}
	var all []*GLeg
	for _, regime := range h.opt.Regimes {
		legs := make([]*GLeg, len(paths))
		for i, pr := range paths {
			legs[i] = &GLeg{Trace: traceName(p.Path), Load: k, Regime: regime, Path: pr.path, Tuned: pr.tuned,
				Requests: len(arr), TimeScale: ts}
		}
		// Runs outside, paths inside: a drift in the machine's load then
		// hits every path alike.
		for range h.opt.Runs {
			for i, pr := range paths {
				out, err := h.run(ctx, legSpec{pool: p, load: k, regime: regime, path: pr.path, tuned: pr.tuned, arr: arr})
				if err != nil {
					return nil, err
				}
				legs[i].Runs = append(legs[i].Runs, out)
			}
		}
		for _, l := range legs {
			l.aggregate()
		}
		all = append(all, legs...)
	}
	return all, nil
}

// run runs one leg once, with progress lines.
func (h *gharness) run(ctx context.Context, s legSpec) (*Outcome, error) {
	h.progress.Leg("%s: %d requests over %s", s.label(), len(s.arr), h.opt.GoodputDuration)
	out, err := runOnce(ctx, h.opt, s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.label(), err)
	}
	h.progress.Printf("      in SLO %d of %d, TTFT p99 %s, refused %d with / %d without Retry-After, unannounced %d, slots busy %.0f%%",
		out.InSLO, out.Offered, benchkit.MsText(out.TTFTP99ms), out.RefusedWithRA, out.RefusedNoRA, out.Unannounced, 100*out.Util)
	if w := out.Why; w != nil && out.QueuedShare > 0 {
		h.progress.Printf("      late %.0f, pool tokens %.0f (in SLO %.0f, their prompts %.0f); while queued (%.0f%% of the time): idle pool slots %.1f, backend waiting %.1f, free at idle gateway %.1f, held %.1f; idle = below limit %.1f + gateway free %.1f + transit %.1f + engine waiting %.1f; %s",
			w.AnsweredLate, w.PoolTokens, w.TokensInSLO, w.PromptInSLO, 100*out.QueuedShare, w.IdleSlotsQueued, w.BackendWaitQueued, w.IdleFreeQueued, w.HeldQueued,
			w.IdleSplitQueued[0], w.IdleSplitQueued[1], w.IdleSplitQueued[2], w.IdleSplitQueued[3], benchkit.ByValue(w.Gateway))
	}
	return out, nil
}

// runLeg runs a leg o.Runs times and aggregates it.
func (h *gharness) runLeg(ctx context.Context, s legSpec, ts float64) (*GLeg, error) {
	l := &GLeg{Trace: traceName(s.pool.Path), Load: s.load, Regime: s.regime, Path: s.path, Tuned: s.tuned,
		Requests: len(s.arr), TimeScale: ts}
	for range h.opt.Runs {
		out, err := h.run(ctx, s)
		if err != nil {
			return nil, err
		}
		l.Runs = append(l.Runs, out)
	}
	l.aggregate()
	return l, nil
}

// sweep runs Sluice with static limits at sweepLoad, unbounded, on the
// first trace, and compares the best of them with the default leg.
func (h *gharness) sweep(ctx context.Context, p *pool, legs []*GLeg) (*Sweep, error) {
	arr, ts, _, err := p.plan(0, sweepLoad, h.opt.GoodputDuration)
	if err != nil {
		return nil, err
	}
	s := &Sweep{Trace: traceName(p.Path), Load: sweepLoad, Regime: regimeUnbounded}
	spec := legSpec{pool: p, load: sweepLoad, regime: regimeUnbounded, path: pathSluice, arr: arr}
	for _, n := range h.opt.Sweep {
		spec.tuned = n
		l, err := h.runLeg(ctx, spec, ts)
		if err != nil {
			return nil, err
		}
		s.Points = append(s.Points, l)
		if l.InSLO > s.KneeInSLO || s.Knee == 0 {
			s.Knee, s.KneeInSLO = n, l.InSLO
		}
	}
	adaptive := findLeg(legs, s.Trace, sweepLoad, regimeUnbounded, pathSluice)
	if adaptive == nil {
		h.progress.Legs += h.opt.Runs
		spec.tuned = 0
		if adaptive, err = h.runLeg(ctx, spec, ts); err != nil {
			return nil, err
		}
		s.AdaptiveLeg = adaptive
	}
	s.AdaptiveInSLO = adaptive.InSLO
	if s.KneeInSLO > 0 {
		s.Ratio = s.AdaptiveInSLO / s.KneeInSLO
	}
	s.Trajectory = adaptive.Runs[0].LimitPerSecond
	return s, nil
}

// findLeg is the leg of trace, load, regime and path with Sluice's
// defaults, or nil.
func findLeg(legs []*GLeg, trace string, load float64, regime, path string) *GLeg {
	for _, l := range legs {
		if l.Trace == trace && l.Load == load && l.Regime == regime && l.Path == path && l.Tuned == 0 {
			return l
		}
	}
	return nil
}
