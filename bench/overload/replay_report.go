package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// writeReplay writes the replay and fairness sections (issue 3).
func writeReplay(ew *benchkit.ErrWriter, rep *Report) {
	writeReplaySetup(ew, rep)
	if len(rep.Replay) > 0 {
		writeReplayTable(ew, rep)
	}
	if len(rep.Fairness) > 0 {
		writeFairness(ew, rep)
	}
	if legs := append(slices.Clone(rep.Replay), rep.Fairness...); len(legs) > 0 {
		writeDiagnostics(ew, rep.Setup, legs)
	}
	if len(rep.Targets) > 0 {
		ew.Printf("### Targets (issue 3)\n\n")
		ew.Targets("target", rep.Targets, benchkit.PassFail)
		ew.Printf("\n")
	}
}

// writeReplaySetup writes the section's title and what its legs ran on.
func writeReplaySetup(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	s := *rep.Setup
	p("## Overload: trace replay at 1x-3x capacity, round robin vs Sluice\n\n")
	if rep.Goodput == nil {
		ew.RunHeader(rep.Run)
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
}

// writeReplayTable writes the trace replay legs and the ceiling the
// round-robin leg measured.
func writeReplayTable(ew *benchkit.ErrWriter, rep *Report) {
	ew.Printf("### Trace replay\n\n")
	ew.TableHead(benchkit.Cols("load", "path", "offered req/s>", "served req/s>", "goodput req/s>", "goodput % of capacity>",
		"backend 503 to clients>", "Sluice refusals>", "other failures>", "refusals with Retry-After>", "time to refuse p50 / p99 / max>", "p99 TTFT (served)>"))
	for _, l := range rep.Replay {
		ra := benchkit.OrDash(l.Refusals > 0, "%.0f%% of %d", 100*l.RetryAfterShare, l.Refusals)
		refuse := benchkit.OrDash(l.Refusals > 0, "%s / %s / %s", benchkit.MsText(l.RefuseP50ms), benchkit.MsText(l.RefuseP99ms), benchkit.MsText(l.RefuseMaxms))
		ew.Row(fmt.Sprintf("%gx", l.Load), l.Path, fmt.Sprintf("%.1f", l.OfferedRPS), fmt.Sprintf("%.1f", l.ServedRPS),
			fmt.Sprintf("%.1f", l.GoodputRPS), fmt.Sprintf("%.0f%%", 100*l.GoodputCap), fmt.Sprint(l.Backend503),
			fmt.Sprint(l.GatewayRefusals), fmt.Sprint(l.OtherFailures), ra, refuse, benchkit.MsText(l.TTFTP99ms))
	}
	ew.Printf("\n")
	if rr := topLeg(rep.Replay, true); rr != nil {
		ew.Printf("Ceiling: at %gx the round-robin leg keeps %.0f%% of the pool's slots busy and completes %.1f req/s within the leg, %.0f%% of the formula's capacity. "+
			"That is what the simulators delivered on this machine by this measure (timer overshoot on a shared machine, warm-up and requests still running at the end of the leg), so goodput cannot exceed it here.\n\n",
			rr.Load, 100*rr.Diag.BatchOccupancy, rr.ServedRPS, 100*rr.ServedRPS/rep.Setup.CapacityRPS)
	}
	lagNote(ew, rep.Replay)
}

// writeFairness writes the fairness legs side by side, a tenant a row.
func writeFairness(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	f := rep.Fairness[0]
	p("### Fairness: one tenant floods, %d behave\n\n", len(f.Tenants)-1)
	p("The flood replays the trace at %gx capacity; each well-behaved tenant sends Poisson arrivals at %gx capacity with request sizes drawn from the same trace. Tenants are API keys (`Authorization: Bearer ...`) listed in Sluice's `auth.keys`, each its own tenant with weight 1 (in open mode every caller is its client address: all would be one tenant). "+
		"Max-min fair share: the output tokens served in the leg (all tenants) water-filled over the tenants' demands. "+
		"Jain's index over min(1, served / fair share) per tenant: 1 when every tenant got at least its max-min share.\n\n",
		rep.Setup.FloodX, rep.Setup.BehaveX)
	cols := benchkit.Cols("tenant", "offered req/s>", "demand out tok/s>")
	jain := []string{"**Jain's index**", "", ""}
	for _, l := range rep.Fairness {
		cols = append(cols, benchkit.Cols(l.Path+": fair share>", "served tok/s>", "served / fair>", "refused>", "goodput>", "p99 TTFT>")...)
		jain = append(jain, "", "", fmt.Sprintf("**%.3f**", l.Jain), "", "", "")
	}
	ew.TableHead(cols)
	for i, t := range f.Tenants {
		row := []string{t.Name, fmt.Sprintf("%.1f", t.OfferedRPS), fmt.Sprintf("%.0f", t.DemandTokS)}
		for _, l := range rep.Fairness {
			u := l.Tenants[i]
			row = append(row, fmt.Sprintf("%.0f", u.FairTokS), fmt.Sprintf("%.0f", u.ServedTokS), fmt.Sprintf("%.0f%%", 100*u.Ratio),
				fmt.Sprintf("%.0f%%", 100*u.RefusedPct), fmt.Sprintf("%.0f%%", 100*u.GoodputPct), benchkit.MsText(u.TTFTP99ms))
		}
		ew.Row(row...)
	}
	ew.Row(jain...)
	p("\n")
	for _, l := range rep.Fairness {
		p("- %s: %d backend 503 reached clients, %d Sluice refusals, %d other failures; goodput %.1f req/s.\n",
			l.Path, l.Backend503, l.GatewayRefusals, l.OtherFailures, l.GoodputRPS)
	}
	p("\n")
	lagNote(ew, rep.Fairness)
}

// writeDiagnostics writes what the pool and the gateway reported during
// each replay and fairness leg.
func writeDiagnostics(ew *benchkit.ErrWriter, s *Setup, legs []*Leg) {
	ew.Printf("### Diagnostics (sampled from /metrics every 100 ms during the arrivals, time-weighted)\n\n")
	ew.TableHead(benchkit.Cols("scenario", "load", "path", "pool slots busy>", "backend queue (mean)>", "Sluice limit: mean [min-max] slots>",
		"Sluice queue (mean)>", "Sluice refusals by reason", "Sluice retries>"))
	for _, l := range legs {
		d := l.Diag
		limit, queued, retries := "-", "-", "-"
		if l.Path != pathRR {
			limit = fmt.Sprintf("%.1f [%.0f-%.0f]", d.LimitMean, d.LimitMin, d.LimitMax)
			queued = fmt.Sprintf("%.1f", d.GatewayQueued)
			retries = fmt.Sprintf("%.0f", d.Retries)
		}
		ew.Row(l.Scenario, fmt.Sprintf("%gx", l.Load), l.Path, fmt.Sprintf("%.0f%%", 100*d.BatchOccupancy),
			fmt.Sprintf("%.1f", d.BackendWaiting), limit, queued, benchkit.ByValue(d.Rejections), retries)
	}
	ew.Printf("\nThe pool has %d slots (%d per server); its capacity assumes all of them decode all the time.\n\n",
		s.Backends*s.Sim.Slots, s.Sim.Slots)
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

// diagnostics summarises a leg's samples and reads the gateway's final
// counters; slots is the pool's.
func diagnostics(ctx context.Context, ss []benchkit.Sample, slots int, gateways []string) Diagnostics {
	d := Diagnostics{Samples: len(ss)}
	d.BatchOccupancy, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.Running / float64(slots) }, nil)
	d.BackendWaiting, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.Waiting }, nil)
	if len(gateways) == 0 {
		return d
	}
	if len(ss) > 0 {
		d.LimitMean, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.GWCapacity }, nil)
		d.GatewayQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.GWQueued }, nil)
		d.LimitMin, d.LimitMax = math.Inf(1), math.Inf(-1)
		for _, s := range ss {
			d.LimitMin, d.LimitMax = min(d.LimitMin, s.GWCapacity), max(d.LimitMax, s.GWCapacity)
		}
	}
	d.Rejections = map[string]float64{}
	c := &http.Client{Timeout: time.Second}
	for _, gw := range gateways {
		g := benchkit.Scrape(ctx, c, gw+"/metrics")
		for k, v := range benchkit.ByLabel(g, "sluice_queue_rejections_total", "reason") {
			d.Rejections[k] += v
		}
		d.Retries += benchkit.Sum(g, "sluice_retries_total")
	}
	return d
}
