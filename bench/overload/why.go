package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// Why are the counts that explain a leg's in-SLO figure beside another
// path's, a two-replica loss above all: where the pool's work went (tokens
// of answers in time, of late answers, and generated in all), what the
// gateways refused and why, whether they hedged, and how the pool's slots
// and the gateways' room were spent while requests waited in a gateway.
// Per run; a GLeg's is the mean over its runs (peaks: the largest).
type Why struct {
	AnsweredLate float64 `json:"answered_late"` // OK, TTFT over the SLO
	TokensInSLO  float64 `json:"completion_tokens_in_slo"`
	PromptInSLO  float64 `json:"prompt_tokens_in_slo"` // what the answers in SLO asked the pool to prefill
	TokensLate   float64 `json:"completion_tokens_late"`
	// PoolTokens is vllm:generation_tokens_total over the simulators at
	// the leg's end: every token generated, for whoever read it or not.
	PoolTokens float64 `json:"pool_generated_tokens"`
	// PoolCancelled: sluice_sim_cancelled_total, requests the simulators
	// dropped because their client (a gateway's lost hedge, a client that
	// gave up) went away.
	PoolCancelled float64 `json:"pool_cancelled"`
	// Gateway is the gateways' counters at the leg's end, summed: "refused
	// <reason>", "hedges <event>", "slot waits <outcome>", "retries",
	// "cancelled in queue".
	Gateway map[string]float64 `json:"gateway_counters,omitempty"`
	// Time-weighted means over the samples where a gateway queue held
	// requests: pool slots not running; requests in the backends' own
	// queues; free slots at gateways whose own queue was empty
	// (benchkit.Sample.GWIdleFree); slots held for due appointments; the
	// gateways' capacity (sum of their limits) against the pool's slots.
	IdleSlotsQueued   float64 `json:"idle_pool_slots_while_queued"`
	BackendWaitQueued float64 `json:"backend_waiting_while_queued"`
	IdleFreeQueued    float64 `json:"idle_gateway_free_while_queued"`
	HeldQueued        float64 `json:"held_slots_while_queued"`
	CapacityQueued    float64 `json:"gateway_capacity_while_queued"`
	// IdleSplitQueued splits IdleSlotsQueued (pool slots - running) into
	// its four parts, over the same samples: pool slots - gateway capacity
	// (the limits below the slots; negative with a handover), capacity - in
	// use (room the gateways did not grant though a queue held requests:
	// holds, fairness, the grant's lag), in use - running - waiting
	// (granted, not yet or no longer in an engine: the request's and the
	// answer's transit), and the engines' waiting. They sum to the idle
	// slots, so the report says which part the idle room is.
	IdleSplitQueued [4]float64 `json:"idle_split_while_queued"`
	// PeakInFlight is each simulator's most running + waiting in a
	// sample, against SlotsPerBackend.
	PeakInFlight    []float64 `json:"peak_in_flight_per_backend"`
	SlotsPerBackend int       `json:"slots_per_backend"`
	// BackendWaitPerS is the pool's requests in the backends' own queues,
	// the mean of each second of the arrivals: when the overfill happened.
	BackendWaitPerS []float64 `json:"backend_waiting_per_s,omitempty"`
}

// whyOf builds a run's Why from its records, samples and the counters
// scraped at its end (sims: each simulator's, gateways: each gateway's).
func whyOf(o options, recs []bench.Record, ss []benchkit.Sample, sims, gateways [][]benchkit.Metric) *Why {
	w := &Why{SlotsPerBackend: max(o.Sim.Slots, 1), Gateway: map[string]float64{}}
	for i := range recs {
		rec := &recs[i]
		if !rec.OK() {
			continue
		}
		if rec.TTFT <= o.SLO {
			w.TokensInSLO += float64(rec.CompletionTokens)
			w.PromptInSLO += float64(rec.PromptTokens)
		} else {
			w.AnsweredLate++
			w.TokensLate += float64(rec.CompletionTokens)
		}
	}
	queued := func(s benchkit.Sample) bool { return s.GWQueued > 0 }
	slots := float64(w.SlotsPerBackend * o.Backends)
	w.IdleSlotsQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return max(slots-s.Running, 0) }, queued)
	w.BackendWaitQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.Waiting }, queued)
	w.IdleFreeQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.GWIdleFree }, queued)
	w.HeldQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.GWHeld }, queued)
	w.CapacityQueued, _ = benchkit.WeightedMean(ss, func(s benchkit.Sample) float64 { return s.GWCapacity }, queued)
	for i, part := range []func(s benchkit.Sample) float64{
		func(s benchkit.Sample) float64 { return slots - s.GWCapacity },
		func(s benchkit.Sample) float64 { return s.GWCapacity - s.GWInUse },
		func(s benchkit.Sample) float64 { return s.GWInUse - s.Running - s.Waiting },
		func(s benchkit.Sample) float64 { return s.Waiting },
	} {
		w.IdleSplitQueued[i], _ = benchkit.WeightedMean(ss, part, queued)
	}
	w.BackendWaitPerS = benchkit.PerSecond(ss, func(s benchkit.Sample) float64 { return s.Waiting })
	w.PeakInFlight = make([]float64, o.Backends)
	for _, s := range ss {
		for i, q := range s.Queue {
			if i < len(w.PeakInFlight) {
				w.PeakInFlight[i] = max(w.PeakInFlight[i], q)
			}
		}
	}
	for _, m := range sims {
		w.PoolTokens += benchkit.Sum(m, "vllm:generation_tokens_total") + benchkit.Sum(m, "llamacpp:tokens_predicted_total")
		w.PoolCancelled += benchkit.Sum(m, "sluice_sim_cancelled_total")
	}
	for _, m := range gateways {
		add := func(prefix, name, label string) {
			for k, v := range benchkit.ByLabel(m, name, label) {
				w.Gateway[prefix+" "+k] += v
			}
		}
		add("refused", "sluice_queue_rejections_total", "reason")
		add("hedges", "sluice_hedges_total", "event")
		add("slot waits", "sluice_slot_waits_total", "outcome")
		if v := benchkit.Sum(m, "sluice_retries_total"); v > 0 {
			w.Gateway["retries"] += v
		}
		if v := benchkit.Sum(m, "sluice_queue_cancelled_total"); v > 0 {
			w.Gateway["cancelled in queue"] += v
		}
	}
	return w
}

// scrapeEnd reads every simulator's and gateway's /metrics once (a leg's
// final counters); a failed scrape is nil.
func scrapeEnd(ctx context.Context, rig *benchkit.Rig) (sims, gateways [][]benchkit.Metric) {
	c := &http.Client{Timeout: 2 * time.Second}
	for _, u := range rig.Sims {
		sims = append(sims, benchkit.Scrape(ctx, c, u+"/metrics"))
	}
	for _, u := range rig.Admins {
		gateways = append(gateways, benchkit.Scrape(ctx, c, u+"/metrics"))
	}
	return sims, gateways
}

// meanWhy is the mean of the runs' Why (peaks: the largest); nil without
// any.
func meanWhy(runs []*Outcome) *Why {
	var ws []*Why
	for _, r := range runs {
		if r.Why != nil {
			ws = append(ws, r.Why)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	n := float64(len(ws))
	m := &Why{SlotsPerBackend: ws[0].SlotsPerBackend, Gateway: map[string]float64{}}
	for _, w := range ws {
		m.AnsweredLate += w.AnsweredLate / n
		m.TokensInSLO += w.TokensInSLO / n
		m.PromptInSLO += w.PromptInSLO / n
		m.TokensLate += w.TokensLate / n
		m.PoolTokens += w.PoolTokens / n
		m.PoolCancelled += w.PoolCancelled / n
		m.IdleSlotsQueued += w.IdleSlotsQueued / n
		m.BackendWaitQueued += w.BackendWaitQueued / n
		m.IdleFreeQueued += w.IdleFreeQueued / n
		m.HeldQueued += w.HeldQueued / n
		m.CapacityQueued += w.CapacityQueued / n
		for i, v := range w.IdleSplitQueued {
			m.IdleSplitQueued[i] += v / n
		}
		for k, v := range w.Gateway {
			m.Gateway[k] += v / n
		}
		for len(m.PeakInFlight) < len(w.PeakInFlight) {
			m.PeakInFlight = append(m.PeakInFlight, 0)
		}
		for i, p := range w.PeakInFlight {
			m.PeakInFlight[i] = max(m.PeakInFlight[i], p)
		}
	}
	return m
}

// writeWhy writes the regime's per-leg diagnostics: one row a leg.
func writeWhy(ew *benchkit.ErrWriter, g *GoodputReport, regime string) {
	ew.Printf("Why (means per run): tokens are completion tokens; pool = generated by the simulators in all (wasted: not in an answer within the SLO); " +
		"while queued = time-weighted over the samples where a gateway queue held requests; free at idle gateway = capacity - in use at gateways whose own queue was empty.\n\n")
	ew.TableHead(benchkit.Cols("trace", "load>", "path", "answered late (tokens)>", "tokens in SLO / pool (wasted)>", "answers in SLO: mean prompt / completion>", "cancelled in pool>",
		"gateway counters", "while queued: idle pool slots / backend waiting / free at idle gateway / held / gateway capacity>", "peak in flight per backend / slots>"))
	for _, l := range g.Legs {
		w := l.Why
		if l.Regime != regime || w == nil {
			continue
		}
		wasted := "-"
		if w.PoolTokens > 0 {
			wasted = fmt.Sprintf("%.0f%%", 100*max(w.PoolTokens-w.TokensInSLO, 0)/w.PoolTokens)
		}
		peaks := make([]string, len(w.PeakInFlight))
		for i, p := range w.PeakInFlight {
			peaks[i] = fmt.Sprintf("%.0f", p)
		}
		queued := benchkit.OrDash(l.QueuedShare > 0, "%.1f / %.1f / %.1f / %.1f / %.1f", w.IdleSlotsQueued, w.BackendWaitQueued, w.IdleFreeQueued, w.HeldQueued, w.CapacityQueued)
		ew.Row(l.Trace, fmt.Sprintf("%gx", l.Load), l.Name(), fmt.Sprintf("%.0f (%.0f)", w.AnsweredLate, w.TokensLate),
			fmt.Sprintf("%.0f / %.0f (%s)", w.TokensInSLO, w.PoolTokens, wasted), meanSizes(w, l.Runs), fmt.Sprintf("%.0f", w.PoolCancelled),
			benchkit.ByValue(w.Gateway), queued, fmt.Sprintf("%s / %d", strings.Join(peaks, ", "), w.SlotsPerBackend))
	}
	ew.Printf("\n")
}

// meanSizes is the mean prompt and completion tokens of the answers in
// SLO over the runs: what a full pool spent on each, and so how many it
// could answer.
func meanSizes(w *Why, runs []*Outcome) string {
	var inSLO float64
	for _, r := range runs {
		inSLO += float64(r.InSLO) / float64(len(runs))
	}
	if inSLO <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f / %.1f", w.PromptInSLO/inSLO, w.TokensInSLO/inSLO)
}
