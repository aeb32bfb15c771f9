package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
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

// startSluice runs one gateway in front of urls with Sluice's default
// configuration (demo.GatewayConfig: defaults, no access log, a 2 s
// shutdown grace) plus expose_backend, which only adds a response header.
// maxConc > 0 makes it a tuned gateway with that static per-backend limit.
// Its /metrics is on gw.AdminURL.
func startSluice(ctx context.Context, urls []string, maxConc int) (*demo.Gateway, error) {
	cfg := demo.GatewayConfig(urls)
	cfg.ExposeBackend = true
	if maxConc > 0 {
		for i := range cfg.Models[0].Backends {
			cfg.Models[0].Backends[i].MaxConcurrency = maxConc
		}
	}
	return demo.StartGateway(ctx, &cfg, nil)
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

	// Raw latencies, kept to pool percentiles over runs.
	ttft, refArrival, refQueued []time.Duration
}

// runOnce runs a leg once on fresh simulators and fresh gateways.
func runOnce(ctx context.Context, o options, s legSpec) (*Outcome, error) {
	wall := time.Now()
	urls, stopSims, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", o.Backends, regimeSim(o, s.regime), nil)
	if err != nil {
		return nil, err
	}
	defer stopSims()
	var targets, gateways []string
	switch s.path {
	case pathDirect:
		t, stop, err := demo.StartRoundRobin(urls)
		if err != nil {
			return nil, err
		}
		defer stop()
		targets = []string{t}
	default:
		n := 1
		if s.path == pathSluice2 {
			n = 2
		}
		for range n {
			gw, err := startSluice(ctx, urls, s.tuned)
			if err != nil {
				return nil, err
			}
			defer gw.Stop()
			targets = append(targets, gw.URL)
			gateways = append(gateways, gw.AdminURL)
		}
	}
	smp := startSampler(ctx, urls, gateways, o.GoodputDuration)
	recs, keptUp, err := runSplit(ctx, o, targets, s)
	ss := smp.finish()
	if err != nil {
		return nil, err
	}
	out := summarizeRun(o, recs, ss, o.Backends*max(o.Sim.Slots, 1), len(gateways) > 0)
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
func summarizeRun(o options, recs []bench.Record, ss []sample, slots int, gateway bool) *Outcome {
	out := &Outcome{Offered: len(recs), UnannouncedBy: map[string]int{}, Samples: len(ss), KeptUp: true}
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

	util := func(s sample) float64 { return s.Running / float64(slots) }
	out.Util, _ = weightedMean(ss, util, nil)
	out.UtilQueued, out.QueuedShare = weightedMean(ss, util, func(s sample) bool { return s.Queued > 0 })
	if gateway {
		target := math.NaN()
		for _, s := range ss {
			if !math.IsNaN(s.DelayTarget) && (math.IsNaN(target) || s.DelayTarget > target) {
				target = s.DelayTarget
			}
		}
		if !math.IsNaN(target) {
			out.DelayTargetS = &target
		}
		out.LimitPerSecond = perSecond(ss, func(s sample) float64 { return s.Capacity })
	}
	return out
}
