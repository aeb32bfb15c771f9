package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// perSecond counts records by the second of f(record), for those ok keeps.
func perSecond(res *bench.Result, f func(*bench.Record) time.Duration, ok func(*bench.Record) bool) map[int]int {
	out := map[int]int{}
	for i := range res.Records {
		r := &res.Records[i]
		if ok(r) {
			out[int(f(r).Seconds())]++
		}
	}
	return out
}

// write is the markdown report: the set-up, the timeline of polls, the
// verdict of each peak and the totals.
func write(md *strings.Builder, rep *Report, o options, capRPS float64, started time.Time) {
	e := &benchkit.ErrWriter{W: md}
	e.Printf("### Scaling signal on a replayed trace\n\n")
	e.Header(rep.Command, rep.Machine, started, time.Since(started).Seconds())
	env := make([]string, len(o.Envelope))
	for i, p := range o.Envelope {
		if p.From == p.To {
			env[i] = fmt.Sprintf("%s at %gx", p.D, p.From)
		} else {
			env[i] = fmt.Sprintf("%s from %gx to %gx", p.D, p.From, p.To)
		}
	}
	e.Printf("- Load: %d requests of `%s` from #%d (order, token counts x%g and burstiness kept), under the envelope %s of the pool's capacity\n",
		rep.Requests, rep.Trace, o.From, o.TokenScale, strings.Join(env, ", "))
	e.Printf("- Pool: %d simulators (benchkit.SimConfig: 16 slots, waiting queue 64), %.2f req/s each for the trace's mean request, %.1f req/s in all; one Sluice with its defaults (scaling.window %gs, headroom 0.2, max_wait %s, %s)%s, streaming clients\n",
		rep.Backends, rep.PerServerRPS, capRPS, rep.Window, o.SLO, hold(rep), conc(o.MaxConc))
	e.Printf("- Signal: `desired_backends` from the admin listener's `/scaling?model=%s`, read every %s (\"held\": what a scaler reads); \"need now\": its terms (demand + headroom + burst + queue) before the scale-in hold; \"burst\": how far the arrivals of half a window recently ran above the measured rate (`arrival_burst`). A peak's signal rises when the need goes above the pool's %d backends and stays there until the peak's first refusal (the held signal is never below the need, so it rose no later); \"at capacity\": the backends' service rate was measured while they were full (else an optimistic estimate from all completions)\n\n", model, o.Poll, rep.Backends)

	writeTimeline(e, rep, o)
	e.Printf("\n")
	writePeaks(e, rep, o)
	res := rep.Bench
	e.Printf("\n")
	rep.Startup.write(e)
	e.Printf("Desired backends (held) at the end: %.2f; polls with the held signal below its need now: %d (%s). Refusals in all: %d (%s); answered within the SLO: %d of %d.\n\n",
		rep.FinalDesired, rep.HeldBelowNeed, passMark(rep.HeldBelowNeed == 0), rep.Refusals, benchkit.ByValue(rep.RefusalReason), res.Goodput.Count, len(res.Records))
	if e.Err != nil {
		md.WriteString(e.Err.Error())
	}
}

// writeTimeline is the table of polls, one a row, next to the requests
// offered, refused and completed in the second that just ended; the
// peaks' rises and falls are marked.
func writeTimeline(e *benchkit.ErrWriter, rep *Report, o options) {
	res := rep.Bench
	offered := perSecond(res, func(r *bench.Record) time.Duration { return r.Planned }, func(*bench.Record) bool { return true })
	refusals := perSecond(res, benchkit.Ended, refused)
	served := perSecond(res, benchkit.Ended, func(r *bench.Record) bool { return r.Status == 200 })
	rises, falls := map[float64]bool{}, map[float64]bool{}
	for _, pk := range rep.Peaks {
		rises[pk.Rise], falls[pk.FellBack] = true, true
	}
	e.Printf("| t (s) | load (x cap) | offered req/s | measured arrivals req/s | forecast req/s | burst | backend service req/s | at capacity | slots / backend | queued | need now | desired backends (held) | refused | completed |\n")
	e.Printf("|--:|--:|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range rep.Polls {
		s := p.Signal
		sec := int(p.T) - 1 // the second that just ended
		mark := ""
		switch {
		case rises[p.T]:
			mark = " ← rises"
		case falls[p.T]:
			mark = " ← back below the pool"
		}
		measured := "no"
		if s.Service.AtCapacity {
			measured = "yes"
		}
		fc := "–"
		if s.ForecastRequestsPerSecond != nil {
			fc = fmt.Sprintf("%.1f", *s.ForecastRequestsPerSecond)
		}
		e.Printf("| %.0f | %.2f | %d | %.1f | %s | %.2f | %.1f | %s | %.0f | %d | %.2f%s | **%.2f** | %d | %d |\n", p.T,
			loadAt(o.Envelope, time.Duration(p.T*float64(time.Second))), offered[sec], s.ArrivalRequestsPerSecond, fc, s.ArrivalBurst,
			s.Service.RequestsPerSecond, measured, s.Service.Slots, s.Queued, needNow(s), mark, s.DesiredBackends, refusals[sec], served[sec])
	}
}

// writePeaks is the table of peaks, each judged on the targets: the
// signal's lead over the first refusal, the need's fall after the drop and
// the held signal's fall when the hold ends.
func writePeaks(e *benchkit.ErrWriter, rep *Report, o options) {
	e.Printf("| peak (from, drop) | signal rises (need > %d, and stays up) | first refusal | lead (target >= %s) | refusals | max desired | need back below %d after the drop (target: falls back) | held signal below %d (target: when the hold ends) |\n",
		rep.Backends, minLead, rep.Backends, rep.Backends)
	e.Printf("|---|--:|--:|---|--:|--:|---|---|\n")
	end := 0.0
	if n := len(rep.Polls); n > 0 {
		end = rep.Polls[n-1].T
	}
	for _, pk := range rep.Peaks {
		lead := "no refusal: " + passMark(pk.Rise >= 0)
		if pk.FirstRefusal >= 0 {
			lead = fmt.Sprintf("%.1f s: %s", pk.Lead, passMark(pk.Rise >= 0 && pk.Lead >= minLead.Seconds()))
		}
		fell := "never: " + passMark(false)
		if pk.FellBack >= 0 {
			fell = fmt.Sprintf("%.1f s later: %s", pk.FellBack-pk.Drop, passMark(true))
		}
		held := "need never fell: " + passMark(false)
		switch {
		case !pk.Above:
			fell, held = "never above the pool", "never above the pool"
		case pk.FellBack < 0:
		case pk.Renewed:
			held = fmt.Sprintf("held into the next peak (hold ends t=%.0f s): %s", pk.HoldEnds, passMark(true))
		case pk.HeldFellBack < 0:
			held = fmt.Sprintf("held to the end of the run, t=%.0f s (hold ends t=%.0f s): %s", end, pk.HoldEnds, passMark(pk.heldOK(end, o.Poll.Seconds())))
		default:
			held = fmt.Sprintf("t=%.0f s (hold ends t=%.0f s): %s", pk.HeldFellBack, pk.HoldEnds, passMark(pk.heldOK(end, o.Poll.Seconds())))
		}
		e.Printf("| %.0f–%.0f s | %s | %s | %s | %d | %.2f | %s | %s |\n", pk.From, pk.Drop, atTime(pk.Rise), atTime(pk.FirstRefusal), lead, pk.Refusals, pk.MaxDesired, fell, held)
	}
}

// passMark is a target's verdict, a failure in bold.
func passMark(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

// atTime is a time in seconds from the start; -1 is never.
func atTime(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", v)
}

func hold(rep *Report) string {
	if !rep.Forecast {
		return "forecast off: no scale-in hold"
	}
	return fmt.Sprintf("forecast on, scaling.scale_in_hold %gs", rep.ScaleInHold)
}

func conc(n int) string {
	if n <= 0 {
		return " and adaptive concurrency limits"
	}
	return fmt.Sprintf(" but a static max_concurrency %d per backend", n)
}
