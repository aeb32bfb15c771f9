package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Paths of the goodput legs.
const (
	pathDirect  = "direct"    // round robin straight to the simulators
	pathSluice  = "sluice"    // one gateway, Sluice's defaults
	pathSluice2 = "sluice x2" // two gateways in front of the same simulators
)

// Simulator regimes of the goodput legs.
const (
	regimeShed      = "shed"      // the simulator's defaults: 64 waiting, then 503
	regimeUnbounded = "unbounded" // queues (almost) without bound, like vLLM
	// unboundedWaiting is large enough that no leg here ever fills it.
	unboundedWaiting = 100000
)

// regimeSim is the simulators' configuration in a regime.
func regimeSim(o options, regime string) sim.Config {
	c := o.Sim
	if regime == regimeUnbounded {
		c.MaxWaiting = unboundedWaiting
	}
	return c
}

// sluiceConfig is Sluice's default configuration in front of urls
// (demo.GatewayConfig: defaults, no access log, a 2 s shutdown grace) plus
// expose_backend, which only adds a response header. maxConc > 0 makes it
// a tuned gateway with that static per-backend limit; sizeAware sets
// admission.size_aware (the experiment of docs/BENCHMARKS.md §8).
// tenants' API keys are listed in auth.keys, each its own tenant of
// weight 1: in open mode (no keys) a presented key identifies nobody and
// every caller is its client address, so a leg's tenants, all from
// 127.0.0.1, were one tenant to admission and its fair queue never ran.
func sluiceConfig(urls []string, maxConc int, sizeAware bool, tenants []bench.Tenant) config.Config {
	cfg := demo.GatewayConfig(urls)
	cfg.ExposeBackend = true
	cfg.Admission.SizeAware = sizeAware
	for _, t := range tenants {
		if t.APIKey != "" {
			cfg.Auth.Keys = append(cfg.Auth.Keys, config.Tenant{Key: t.APIKey})
		}
	}
	if maxConc > 0 {
		for i := range cfg.Models[0].Backends {
			cfg.Models[0].Backends[i].MaxConcurrency = maxConc
		}
	}
	return cfg
}

// startRig starts a leg's fresh simulators in regime and the path in front
// of them: round robin, one gateway or two (pathSluice2), tuned to a static
// max_concurrency when tuned > 0, Sluice knowing tenants' keys
// (sluiceConfig).
func startRig(ctx context.Context, o options, regime, path string, tuned int, tenants []bench.Tenant) (*benchkit.Rig, error) {
	rig, err := benchkit.StartRig(ctx, o.Backends, regimeSim(o, regime))
	if err != nil {
		return nil, err
	}
	switch path {
	case pathDirect, pathRR:
		err = rig.RoundRobin()
	case pathSluice2:
		if err = rig.Sluice(ctx, sluiceConfig(rig.Sims, tuned, o.SizeAware, tenants)); err == nil {
			err = rig.Sluice(ctx, sluiceConfig(rig.Sims, tuned, o.SizeAware, tenants))
		}
	default:
		err = rig.Sluice(ctx, sluiceConfig(rig.Sims, tuned, o.SizeAware, tenants))
	}
	if err != nil {
		rig.Stop()
		return nil, err
	}
	return rig, nil
}

// legSpec is one goodput leg: a plan through a path in a regime.
type legSpec struct {
	pool   *pool
	load   float64
	regime string
	path   string
	tuned  int // static max_concurrency; 0 = Sluice's defaults
	arr    []bench.Arrival
}

// pathName is the path as tables show it: a tuned leg says so in its row.
func pathName(path string, tuned int) string {
	if tuned > 0 {
		return fmt.Sprintf("%s (tuned: static max_concurrency %d)", path, tuned)
	}
	return path
}

func (s legSpec) label() string {
	return fmt.Sprintf("%s %gx %s %s", traceName(s.pool.Path), s.load, s.regime, pathName(s.path, s.tuned))
}

// Refusals are how a leg's requests that were not answered ended: the
// columns that a run (Outcome) and a leg over its runs (GLeg) share.
type Refusals struct {
	// Refusals: every 429/503, with and without Retry-After, and split by
	// X-Sluice-Queue-Time: 0 or absent = refused at arrival.
	RefusedWithRA      int     `json:"refused_with_retry_after"`
	RefusedNoRA        int     `json:"refused_without_retry_after"`
	RefusedAtArrival   int     `json:"refused_at_arrival"`
	RefusedAfterQueue  int     `json:"refused_after_queueing"`
	RefuseArrivalP99ms float64 `json:"refuse_at_arrival_p99_ms"`
	RefuseQueuedP99ms  float64 `json:"refuse_after_queueing_p99_ms"`
	// Unannounced: every non-OK outcome but a 429/503 with Retry-After.
	Unannounced   int            `json:"unannounced_failures"`
	UnannouncedBy map[string]int `json:"unannounced_by_kind,omitempty"`
}

// add counts r's refusals into f (not the percentiles: they pool the raw
// latencies).
func (f *Refusals) add(r Refusals) {
	f.RefusedWithRA += r.RefusedWithRA
	f.RefusedNoRA += r.RefusedNoRA
	f.RefusedAtArrival += r.RefusedAtArrival
	f.RefusedAfterQueue += r.RefusedAfterQueue
	f.Unannounced += r.Unannounced
	if f.UnannouncedBy == nil {
		f.UnannouncedBy = map[string]int{}
	}
	for k, v := range r.UnannouncedBy {
		f.UnannouncedBy[k] += v
	}
}

// Outcome is one run of one goodput leg.
type Outcome struct {
	Offered int `json:"offered"` // arrivals whose time came
	Sent    int `json:"sent"`
	// DroppedByGenerator: arrivals the load generator could not send (its
	// in-flight cap); none in a sound run, and not the gateway's doing.
	DroppedByGenerator int `json:"dropped_by_generator,omitempty"`
	OK                 int `json:"ok"`
	// InSLO: answered OK (stream complete) with TTFT <= the SLO.
	InSLO     int     `json:"answered_in_slo"`
	TTFTP50ms float64 `json:"ttft_p50_ms"` // OK requests
	TTFTP99ms float64 `json:"ttft_p99_ms"`
	Refusals
	// Slot utilisation: time-weighted mean of running / pool slots over
	// the arrivals, and over the samples where a gateway queue held
	// requests (QueuedShare of the time).
	Util        float64 `json:"slot_utilisation"`
	UtilQueued  float64 `json:"slot_utilisation_while_queued"`
	QueuedShare float64 `json:"gateway_queue_nonempty_share"`
	Samples     int     `json:"samples"`
	// DelayTargetS: sluice_queue_delay_target_seconds (nil: not exported).
	DelayTargetS *float64 `json:"queue_delay_target_s,omitempty"`
	// LimitPerSecond: sluice_queue_capacity (summed over gateways), the
	// mean of each second of the arrivals.
	LimitPerSecond []float64 `json:"sluice_queue_capacity_per_s,omitempty"`
	LagP99ms       float64   `json:"generator_lag_p99_ms"`
	KeptUp         bool      `json:"generator_kept_up"`
	WallS          float64   `json:"wall_s"`
	Why            *Why      `json:"why,omitempty"`

	// Raw latencies, kept to pool percentiles over runs.
	ttft, refArrival, refQueued []time.Duration
}

// sampleEvery is how often a leg's simulators and gateways are scraped.
const sampleEvery = 100 * time.Millisecond

// runOnce runs a leg once on fresh simulators and fresh gateways.
func runOnce(ctx context.Context, o options, s legSpec) (*Outcome, error) {
	wall := time.Now()
	rig, err := startRig(ctx, o, s.regime, s.path, s.tuned, nil)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	smp := rig.Sample(ctx, sampleEvery, o.GoodputDuration)
	recs, keptUp, err := runSplit(ctx, o, rig.Targets, s)
	ss := smp.Finish()
	if err != nil {
		return nil, err
	}
	sims, gateways := scrapeEnd(ctx, rig)
	out := summarizeRun(o, recs, ss, o.Backends*max(o.Sim.Slots, 1), len(rig.Admins) > 0)
	out.Why = whyOf(o, recs, ss, sims, gateways)
	out.KeptUp = out.KeptUp && keptUp
	out.WallS = time.Since(wall).Seconds()
	return out, nil
}

// runSplit replays s.arr, arrivals dealt alternately over targets (two
// Sluice replicas behind a DNS or L4 round robin see exactly this), each
// share by its own load generator, all started together. It returns every
// record and whether all generators kept up.
func runSplit(ctx context.Context, o options, targets []string, s legSpec) ([]bench.Record, bool, error) {
	n := len(targets)
	parts := make([][]bench.Arrival, n)
	for i, a := range s.arr {
		parts[i%n] = append(parts[i%n], a)
	}
	res := make([]*bench.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for j := range n {
		rc := newRunConfig(o, targets[j], s.label(), parts[j])
		// Each generator salts its prompts differently, so the halves do not
		// send identical prompts (a prefix cache would profit). The first
		// keeps bench's default salt.
		rc.Rand = rand.New(rand.NewPCG(1, 2+uint64(j)))
		wg.Go(func() { res[j], errs[j] = bench.Run(ctx, rc) })
	}
	wg.Wait()
	var recs []bench.Record
	kept := true
	for j := range n {
		if errs[j] != nil {
			return nil, false, errs[j]
		}
		if res[j].Interrupted {
			return nil, false, ctx.Err()
		}
		recs = append(recs, res[j].Records...)
		kept = kept && res[j].KeptUp
	}
	return recs, kept, nil
}

// queueTime is X-Sluice-Queue-Time: whole milliseconds spent in Sluice's
// queue; 0 when absent or unreadable.
func queueTime(rec *bench.Record) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(header(rec, hdrQueueTime)), 64)
	if err != nil || !(v > 0) {
		return 0
	}
	return v
}

// failureKind names an unannounced failure.
func failureKind(rec *bench.Record) string {
	switch {
	case rec.Refused():
		return fmt.Sprintf("%d without Retry-After", rec.Status)
	case rec.Kind == bench.KindStatus:
		return fmt.Sprintf("status %d", rec.Status)
	case rec.Kind == bench.KindRead || rec.Kind == bench.KindTruncated:
		return "broken stream"
	case rec.Kind == "":
		return "other"
	}
	return string(rec.Kind) // timeout, connect, canceled, other
}

// summarizeRun counts a run's records and summarises its samples over
// the pool's slots.
func summarizeRun(o options, recs []bench.Record, ss []benchkit.Sample, slots int, gateway bool) *Outcome {
	out := &Outcome{Offered: len(recs), Refusals: Refusals{UnannouncedBy: map[string]int{}}, Samples: len(ss), KeptUp: true}
	var lag []time.Duration
	for i := range recs {
		rec := &recs[i]
		lag = append(lag, rec.Lag)
		if rec.Dropped {
			out.DroppedByGenerator++
			out.KeptUp = false
			continue
		}
		out.Sent++
		if rec.OK() {
			out.OK++
			out.ttft = append(out.ttft, rec.TTFT)
			if rec.TTFT <= o.SLO {
				out.InSLO++
			}
			continue
		}
		announced := header(rec, hdrRetryAfter) != ""
		if rec.Refused() {
			if announced {
				out.RefusedWithRA++
			} else {
				out.RefusedNoRA++
			}
			if queueTime(rec) > 0 {
				out.RefusedAfterQueue++
				out.refQueued = append(out.refQueued, rec.E2E)
			} else {
				out.RefusedAtArrival++
				out.refArrival = append(out.refArrival, rec.E2E)
			}
			if announced {
				continue
			}
		}
		out.Unannounced++
		out.UnannouncedBy[failureKind(rec)]++
	}
	out.LagP99ms = benchkit.PercentileMs(lag, 99)
	out.KeptUp = out.KeptUp && out.LagP99ms < 50
	out.TTFTP50ms, out.TTFTP99ms = benchkit.PercentileMs(out.ttft, 50), benchkit.PercentileMs(out.ttft, 99)
	out.RefuseArrivalP99ms = benchkit.PercentileMs(out.refArrival, 99)
	out.RefuseQueuedP99ms = benchkit.PercentileMs(out.refQueued, 99)

	util := func(s benchkit.Sample) float64 { return s.Running / float64(slots) }
	out.Util, _ = benchkit.WeightedMean(ss, util, nil)
	out.UtilQueued, out.QueuedShare = benchkit.WeightedMean(ss, util, func(s benchkit.Sample) bool { return s.GWQueued > 0 })
	if gateway {
		if target, ok := benchkit.MaxDelayTarget(ss); ok {
			out.DelayTargetS = &target
		}
		out.LimitPerSecond = benchkit.PerSecond(ss, func(s benchkit.Sample) float64 { return s.GWCapacity })
	}
	return out
}
