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
	e.Printf("- Pool: %d simulators (benchkit.SimConfig: 16 slots, waiting queue 64), %.2f req/s each for the trace's mean request, %.1f req/s in all; one Sluice with its defaults (scaling.window %gs, headroom 0.2, max_wait %s)%s, streaming clients\n",
		rep.Backends, rep.PerServerRPS, capRPS, rep.Window, o.SLO, conc(o.MaxConc))
	e.Printf("- Signal: `desired_backends` from the admin listener's `/scaling?model=%s`, read every %s; it rises when it goes above the pool's %d backends and stays there until the peak's first refusal; \"at capacity\": the backends' service rate was measured while they were full (else an optimistic estimate from all completions)\n\n", model, o.Poll, rep.Backends)

	res := rep.Bench
	offered := perSecond(res, func(r *bench.Record) time.Duration { return r.Planned }, func(*bench.Record) bool { return true })
	refusals := perSecond(res, benchkit.Ended, refused)
	served := perSecond(res, benchkit.Ended, func(r *bench.Record) bool { return r.Status == 200 })
	rises, falls := map[float64]bool{}, map[float64]bool{}
	for _, pk := range rep.Peaks {
		rises[pk.Rise], falls[pk.FellBack] = true, true
	}
	e.Printf("| t (s) | load (x cap) | offered req/s | measured arrivals req/s | backend service req/s | at capacity | slots / backend | queued | desired backends | refused | completed |\n")
	e.Printf("|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|\n")
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
		e.Printf("| %.0f | %.2f | %d | %.1f | %.1f | %s | %.0f | %d | **%.2f**%s | %d | %d |\n", p.T,
			loadAt(o.Envelope, time.Duration(p.T*float64(time.Second))), offered[sec], s.ArrivalRequestsPerSecond,
			s.Service.RequestsPerSecond, measured, s.Service.Slots, s.Queued, s.DesiredBackends, mark, refusals[sec], served[sec])
	}
	e.Printf("\n")
	pass := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "**FAIL**"
	}
	at := func(v float64) string {
		if v < 0 {
			return "never"
		}
		return fmt.Sprintf("%.1f s", v)
	}
	e.Printf("| peak (from, drop) | signal rises (desired > %d, and stays up) | first refusal | lead (target >= %s) | refusals | max desired | back below %d after the drop (target: falls back) |\n",
		rep.Backends, minLead, rep.Backends)
	e.Printf("|---|--:|--:|---|--:|--:|---|\n")
	for _, pk := range rep.Peaks {
		lead := "no refusal: " + pass(pk.Rise >= 0)
		if pk.FirstRefusal >= 0 {
			lead = fmt.Sprintf("%.1f s: %s", pk.Lead, pass(pk.Rise >= 0 && pk.Lead >= minLead.Seconds()))
		}
		fell := "never: " + pass(false)
		if pk.FellBack >= 0 {
			fell = fmt.Sprintf("%.1f s later: %s", pk.FellBack-pk.Drop, pass(true))
		}
		e.Printf("| %.0f–%.0f s | %s | %s | %s | %d | %.2f | %s |\n", pk.From, pk.Drop, at(pk.Rise), at(pk.FirstRefusal), lead, pk.Refusals, pk.MaxDesired, fell)
	}
	e.Printf("\nDesired backends at the end: %.2f. Refusals in all: %d (%s); answered within the SLO: %d of %d.\n\n",
		rep.FinalDesired, rep.Refusals, benchkit.ByValue(rep.RefusalReason), res.Goodput.Count, len(res.Records))
	if e.Err != nil {
		md.WriteString(e.Err.Error())
	}
}

func conc(n int) string {
	if n <= 0 {
		return " and adaptive concurrency limits"
	}
	return fmt.Sprintf(" but a static max_concurrency %d per backend", n)
}
