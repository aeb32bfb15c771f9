package main

import (
	"fmt"
	"math"
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
	e.Printf("- Signal: `desired_backends` from the admin listener's `/scaling?model=%s`, read every %s; \"rises\" = first above the pool's %d backends\n\n", model, o.Poll, rep.Backends)

	res := rep.Bench
	offered := perSecond(res, func(r *bench.Record) time.Duration { return r.Planned }, func(*bench.Record) bool { return true })
	refusals := perSecond(res, benchkit.Ended, refused)
	served := perSecond(res, benchkit.Ended, func(r *bench.Record) bool { return r.Status == 200 })
	e.Printf("| t (s) | load (x cap) | offered req/s | measured arrivals req/s | backend service req/s | slots / backend | queued | desired backends | refused | completed |\n")
	e.Printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range rep.Polls {
		s := p.Signal
		sec := int(p.T) - 1 // the second that just ended
		mark := ""
		switch {
		case rep.FirstSignal == p.T:
			mark = " ← signal rises"
		case rep.FellBack == p.T:
			mark = " ← back below the pool"
		}
		e.Printf("| %.0f | %.2f | %d | %.1f | %.1f | %.0f | %d | **%.2f**%s | %d | %d |\n", p.T,
			loadAt(o.Envelope, time.Duration(p.T*float64(time.Second))), offered[sec], s.ArrivalRequestsPerSecond,
			s.Service.RequestsPerSecond, s.Service.Slots, s.Queued, s.DesiredBackends, mark, refusals[sec], served[sec])
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
		return fmt.Sprintf("t=%.1f s", v)
	}
	e.Printf("| figure | value | target |\n|---|---|---|\n")
	e.Printf("| signal rises (desired > %d) | %s | |\n", rep.Backends, at(rep.FirstSignal))
	e.Printf("| first refusal (429/503 at the client) | %s (%d refusals in all: %s) | |\n", at(rep.FirstRefusal), rep.Refusals, benchkit.ByValue(rep.RefusalReason))
	leadOK := rep.FirstSignal >= 0 && (rep.FirstRefusal < 0 || rep.Lead >= minLead.Seconds())
	lead := "no refusal"
	if rep.FirstRefusal >= 0 && rep.FirstSignal >= 0 {
		lead = fmt.Sprintf("%.1f s", rep.Lead)
	}
	e.Printf("| lead of the signal over the first refusal | %s | >= %s: %s |\n", lead, minLead, pass(leadOK))
	e.Printf("| peak desired backends | %.2f | |\n", rep.PeakDesired)
	fell := "never"
	if rep.FellBack >= 0 {
		fell = fmt.Sprintf("t=%.1f s, %.1f s after the drop at t=%.0f s", rep.FellBack, rep.FellBack-rep.DropAt, rep.DropAt)
	}
	e.Printf("| back below the pool's size after the drop | %s; %.2f at the end | falls back: %s |\n", fell, rep.FinalDesired,
		pass(rep.FellBack >= 0 && rep.FinalDesired < float64(rep.Backends)))
	e.Printf("| answered within the SLO | %d of %d (goodput %.1f req/s) | |\n\n", res.Goodput.Count, len(res.Records), finite(res.Goodput.PerS))
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

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
