package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// writeReplay writes the replay and fairness sections (issue 3).
func writeReplay(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	s := *rep.Setup
	p("## Overload: trace replay at 1x-3x capacity, round robin vs Sluice\n\n")
	if rep.Goodput == nil {
		ew.Header(rep.Command, rep.Machine, rep.Started, rep.Elapsed)
	}
	p("- Trace: `%s` (%s), %d requests. "+
		"Token counts scaled by %g and clamped to %d prompt / %d output tokens (%d / %d before scaling), so the simulators run on a small machine. "+
		"Each leg replays the first round(k x capacity x %gs) requests, time-scaled so they span %gs: the mean rate is exactly k x capacity and the trace's burstiness is kept.\n",
		s.Trace, traceSource(s.Trace), s.TraceRows, s.TokenScale, s.MaxInput, s.MaxOutput, s.ClampInput, s.ClampOutput, s.DurationS, s.DurationS)
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
		if rr := topLeg(rep.Replay, true); rr != nil {
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
		p("### Diagnostics (sampled from /metrics every 100 ms during the arrivals, time-weighted)\n\n")
		p("| scenario | load | path | pool slots busy | backend queue (mean) | Sluice limit: mean [min-max] slots | Sluice queue (mean) | Sluice refusals by reason | Sluice retries |\n")
		p("|---|---|---|--:|--:|--:|--:|---|--:|\n")
		for _, l := range legs {
			d := l.Diag
			limit, queued, retries := "-", "-", "-"
			if l.Path != pathRR {
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
// diagnostics summarises a leg's samples and reads the gateway's final
// counters; slots is the pool's.
func diagnostics(ctx context.Context, ss []sample, slots int, gateways []string) Diagnostics {
	d := Diagnostics{Samples: len(ss)}
	all := func(sample) bool { return true }
	d.BatchOccupancy, _ = weightedMean(ss, func(s sample) float64 { return s.Running / float64(slots) }, all)
	d.BackendWaiting, _ = weightedMean(ss, func(s sample) float64 { return s.Waiting }, all)
	if len(gateways) == 0 {
		return d
	}
	if len(ss) > 0 {
		d.LimitMean, _ = weightedMean(ss, func(s sample) float64 { return s.Capacity }, all)
		d.GatewayQueued, _ = weightedMean(ss, func(s sample) float64 { return s.Queued }, all)
		d.LimitMin, d.LimitMax = math.Inf(1), math.Inf(-1)
		for _, s := range ss {
			d.LimitMin, d.LimitMax = min(d.LimitMin, s.Capacity), max(d.LimitMax, s.Capacity)
		}
	}
	d.Rejections = map[string]float64{}
	c := newScrapeClient()
	for _, gw := range gateways {
		g := benchkit.Scrape(ctx, c, gw+"/metrics")
		for _, m := range g {
			if m.Name == "sluice_queue_rejections_total" && m.Value > 0 {
				d.Rejections[benchkit.Label(m.Labels, "reason")] += m.Value
			}
		}
		d.Retries += benchkit.Sum(g, "sluice_retries_total")
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
