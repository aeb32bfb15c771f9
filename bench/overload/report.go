package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Targets of issue 10.
const (
	targetVsDirect   = 0.98 // sluice / direct, shed regime
	targetVsPool     = 0.95 // sluice / pool in-time capacity, unbounded regime
	targetReplicas   = 0.95 // sluice x2 / sluice
	targetVsKnee     = 0.97 // adaptive / best static limit
	targetAtArrival  = 50 * time.Millisecond
	targetQueueSlack = 50 * time.Millisecond // over the queue delay target
)

// reference is what a Sluice leg is measured against: round robin in the
// shed regime; in the unbounded regime the pool's in-time capacity, which
// is the shed regime's round-robin figure (a pool that sheds serves in
// time what it serves at all). nil when that leg was not run.
func reference(legs []*GLeg, l *GLeg) *GLeg {
	return findLeg(legs, l.Trace, l.Load, regimeShed, pathDirect)
}

func ratioText(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", a/b)
}

func runsText(r []int) string {
	if len(r) < 2 {
		return ""
	}
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = fmt.Sprint(v)
	}
	return " [" + strings.Join(s, ", ") + "]"
}

// writeGoodput writes the goodput section.
func writeGoodput(ew *benchkit.ErrWriter, rep *Report) {
	g := rep.Goodput
	p := ew.Printf
	p("## Overload: goodput within the SLO, Sluice's defaults vs round robin\n\n")
	ew.RunHeader(rep.Run)
	for _, t := range g.Traces {
		p("- Trace `%s` (%s): %d requests; mean prompt %.1f / output %.1f tokens over the first %d (after clamping to %d / %d and scaling by %g); pool capacity %.2f req/s per server, **%.1f req/s** for the pool.\n",
			t.Path, traceSource(t.Path), t.Rows, t.MeanPrompt, t.MeanOutput, t.MeanOver, g.ClampInput, g.ClampOutput, g.TokenScale, t.PerServerRPS, t.CapacityRPS)
	}
	sc := g.Sim
	p("- Each leg replays the trace's first round(k x capacity x %gs) requests, time-scaled to span %gs (mean rate exactly k x capacity, burstiness kept).\n", g.DurationS, g.DurationS)
	p("- Pool: %d simulators, each %d slots, KV %d tokens, prefill %.0f tok/s, decode step %s + %s per sequence. Regimes: ",
		g.Backends, sc.Slots, sc.KVTokens, sc.PrefillTokensPerSec, sc.DecodeStepBase, sc.DecodeStepPerSeq)
	for i, r := range g.Regimes {
		if i > 0 {
			p(", ")
		}
		p("**%s** (waiting queue %d, then 503 without Retry-After)", r.Name, r.MaxWaiting)
	}
	p(".\n")
	if sc.HideSlots {
		p("- The simulators leave their slot count out of /metrics (`--hide-slots`): Sluice reads no batch bound, as from vLLM, only the running and waiting gauges.\n")
	}
	if sc.MetricsStyle == sim.MetricsLlamaCpp {
		p("- The simulators write llama.cpp server's metrics (`--metrics-style llamacpp`): Sluice reads `llamacpp:requests_processing` and `llamacpp:requests_deferred`, no batch bound and no KV usage.\n")
	}
	p("- Paths: **direct** = round robin (`httputil.ReverseProxy`) straight to the simulators; **sluice** = one gateway with Sluice's default configuration (`demo.GatewayConfig`, plus expose_backend, log.access false, shutdown_grace 2s); **sluice x2** = two such gateways in front of the same simulators, arrivals dealt alternately. Rows marked tuned set a static max_concurrency.\n")
	p("- Answered in SLO: completed streams with TTFT <= %s. Clients give up after %gs. %d run(s) per leg, fresh simulators and gateways each; the in-SLO figure is the median [per run], other counts are totals over the runs, percentiles pool the runs.\n",
		time.Duration(g.SLOms*float64(time.Millisecond)), g.ClientTimeoutS, g.Runs)
	p("- Refused at arrival / after queueing: by the response's `%s` (0 or absent: at arrival). Unannounced: every other outcome than OK or a 429/503 with Retry-After. Slots busy: time-weighted mean of running / pool slots over the arrivals (sampled every %s), and over the samples where a gateway queue held requests.\n\n",
		hdrQueueTime, sampleEvery)

	for _, r := range g.Regimes {
		writeRegime(ew, g, r.Name)
	}
	if s := g.Sweep; s != nil {
		writeSweep(ew, g, s)
	}
	if h := g.Honesty; h != nil {
		writeHonesty(ew, h)
	}
	writeNotes(ew, g)
	writeTargets(ew, "Targets (issue 10)", g.Targets)
}

func writeRegime(ew *benchkit.ErrWriter, g *GoodputReport, regime string) {
	p := ew.Printf
	p("### Regime %s\n\n", regime)
	ew.TableHead(benchkit.Cols("trace", "load>", "path", "offered>", "answered in SLO>", "TTFT p50 / p99>", "refused with RA>", "refused without RA>",
		"refusal p99 at arrival (n)>", "refusal p99 after queueing (n)>", "unannounced>", "slots busy: all / while queued (share of time)>"))
	for _, l := range g.Legs {
		if l.Regime != regime {
			continue
		}
		queued := benchkit.OrDash(l.QueuedShare > 0, "%.0f%% (%.0f%%)", 100*l.UtilQueued, 100*l.QueuedShare)
		ew.Row(l.Trace, fmt.Sprintf("%gx", l.Load), l.Name(), fmt.Sprint(l.Runs[0].Offered), fmt.Sprintf("%.0f%s", l.InSLO, runsText(l.InSLORuns)),
			benchkit.MsText(l.TTFTP50ms)+" / "+benchkit.MsText(l.TTFTP99ms), fmt.Sprint(l.RefusedWithRA), fmt.Sprint(l.RefusedNoRA),
			fmt.Sprintf("%s (%d)", msOrDash(l.RefuseArrivalP99ms, l.RefusedAtArrival), l.RefusedAtArrival),
			fmt.Sprintf("%s (%d)", msOrDash(l.RefuseQueuedP99ms, l.RefusedAfterQueue), l.RefusedAfterQueue),
			fmt.Sprint(l.Unannounced), fmt.Sprintf("%.0f%% / %s", 100*l.Util, queued))
	}
	p("\n")
	refName := "direct (shed)"
	if regime == regimeUnbounded {
		refName = "pool in-time capacity (shed direct)"
	}
	ew.TableHead(benchkit.Cols("trace", "load>", refName+">", "sluice>", "sluice / reference>", "sluice x2>", "x2 / sluice>", "sluice TTFT p99>"))
	for _, l := range g.Legs {
		if l.Regime != regime || l.Path != pathSluice || l.Tuned != 0 {
			continue
		}
		ref, refN := "n/a (not run)", 0.0
		if r := reference(g.Legs, l); r != nil {
			ref, refN = fmt.Sprintf("%.0f", r.InSLO), r.InSLO
		}
		x2, x2r := "-", "-"
		if r := findLeg(g.Legs, l.Trace, l.Load, regime, pathSluice2); r != nil {
			x2, x2r = fmt.Sprintf("%.0f", r.InSLO), ratioText(r.InSLO, l.InSLO)
		}
		ew.Row(l.Trace, fmt.Sprintf("%gx", l.Load), ref, fmt.Sprintf("%.0f", l.InSLO), ratioText(l.InSLO, refN), x2, x2r, benchkit.MsText(l.TTFTP99ms))
	}
	p("\n")
	writeWhy(ew, g, regime)
}

// msOrDash is v in ms, or "-" when it is over no request.
func msOrDash(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return benchkit.MsText(v)
}

func writeSweep(ew *benchkit.ErrWriter, g *GoodputReport, s *Sweep) {
	p := ew.Printf
	p("### Static limit sweep (%s, %gx, %s)\n\n", s.Trace, s.Load, s.Regime)
	p("What the best hand-tuned static per-backend max_concurrency achieves, against the adaptive default.\n\n")
	ew.TableHead(benchkit.Cols("Sluice", "answered in SLO>", "TTFT p99>", "slots busy while queued>"))
	for _, l := range s.Points {
		queued := benchkit.OrDash(l.QueuedShare > 0, "%.0f%%", 100*l.UtilQueued)
		ew.Row(fmt.Sprintf("tuned: static max_concurrency %d", l.Tuned), fmt.Sprintf("%.0f%s", l.InSLO, runsText(l.InSLORuns)), benchkit.MsText(l.TTFTP99ms), queued)
	}
	p("\nKnee: max_concurrency %d (%.0f answered in SLO). Adaptive default: %.0f, ratio adaptive / knee **%s**.\n\n",
		s.Knee, s.KneeInSLO, s.AdaptiveInSLO, ratioText(s.AdaptiveInSLO, s.KneeInSLO))
	if len(s.Trajectory) > 0 {
		parts := make([]string, len(s.Trajectory))
		for i, v := range s.Trajectory {
			parts[i] = fmt.Sprintf("t=%ds %.0f", i+1, v)
		}
		p("Adaptive limit (`sluice_queue_capacity`, mean of each second) during the default leg: %s.\n\n", strings.Join(parts, ", "))
	} else {
		p("Adaptive limit: no samples.\n\n")
	}
}

func writeHonesty(ew *benchkit.ErrWriter, h *Honesty) {
	p := ew.Printf
	p("### Retry-After honesty (%s)\n\n", h.Trace)
	p("%d requests: %d at %gx capacity for %gs, then %gx for %gs, through one Sluice with defaults (shed regime). A client refused with Retry-After sleeps exactly the advice (at most %s) and retries once.\n\n",
		h.Requests, h.BurstReq, h.BurstX, h.BurstS, h.CalmX, h.CalmS, honestyMaxWait)
	ew.TableHead(benchkit.Cols("first attempt OK>", "refused with RA>", "refused without RA>", "other failures>", "Retry-After p50 / max>",
		"advised after / during the burst>", "retried>", "retries OK>", "retries refused again>"))
	ew.Row(fmt.Sprint(h.FirstOK), fmt.Sprint(h.RefusedWithRA), fmt.Sprint(h.RefusedNoRA), fmt.Sprint(h.OtherFailures),
		fmt.Sprintf("%gs / %gs", h.RetryAfterP50s, h.RetryAfterMaxs), fmt.Sprintf("%d / %d", h.BeyondBurst, h.DuringBurst), fmt.Sprint(h.Retried),
		fmt.Sprintf("%d (%.1f%%)", h.RetriedOK, 100*h.RetrySuccess), fmt.Sprint(h.RetriedRefused))
	p("\n")
	p("Retries advised to come back after the burst's end (offered load back under capacity, the issue's population): %d of %d succeeded (%s). Retries advised into the burst: %d of %d succeeded. All retries: %d of %d (%.1f%%).\n\n",
		h.AfterOK, h.AfterRetried, pctText(h.AfterOK, h.AfterRetried), h.DuringOK, h.DuringRetried, h.RetriedOK, h.Retried, 100*h.RetrySuccess)
	if h.Unparsable > 0 || h.BeyondCap > 0 {
		p("Not retried: %d unparsable Retry-After, %d beyond %s.\n\n", h.Unparsable, h.BeyondCap, honestyMaxWait)
	}
}

// writeNotes lists the kinds of unannounced failures and the legs whose
// load generator fell behind.
func writeNotes(ew *benchkit.ErrWriter, g *GoodputReport) {
	var fails, behind []string
	for _, l := range allLegs(g) {
		id := fmt.Sprintf("%s %gx %s %s", l.Trace, l.Load, l.Regime, l.Name())
		if len(l.UnannouncedBy) > 0 {
			keys := slices.Sorted(maps.Keys(l.UnannouncedBy))
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, l.UnannouncedBy[k]))
			}
			fails = append(fails, id+": "+strings.Join(parts, ", "))
		}
		if !l.KeptUp {
			lag := 0.0
			for _, r := range l.Runs {
				lag = max(lag, r.LagP99ms)
			}
			behind = append(behind, fmt.Sprintf("%s (lag p99 up to %s, %d dropped)", id, benchkit.MsText(lag), l.Dropped))
		}
	}
	if len(fails) > 0 {
		ew.Printf("Unannounced failures by kind:\n\n")
		for _, f := range fails {
			ew.Printf("- %s\n", f)
		}
		ew.Printf("\n")
	}
	if len(behind) > 0 {
		ew.Printf("The load generator fell behind its plan (lag p99 >= 50 ms or arrivals dropped) in: %s. The machine was busy; treat those legs with care.\n\n", strings.Join(behind, "; "))
	} else {
		ew.Printf("The load generator kept up with its plan in every leg (lag p99 < 50 ms).\n\n")
	}
}

// allLegs is the goodput legs and the sweep's.
func allLegs(g *GoodputReport) []*GLeg {
	legs := slices.Clone(g.Legs)
	if g.Sweep != nil {
		legs = append(legs, g.Sweep.Points...)
		if g.Sweep.AdaptiveLeg != nil {
			legs = append(legs, g.Sweep.AdaptiveLeg)
		}
	}
	return legs
}

func writeTargets(ew *benchkit.ErrWriter, title string, ts []Target) {
	if len(ts) == 0 {
		return
	}
	ew.Printf("### %s\n\n", title)
	ew.Targets("target", ts, benchkit.PassMiss)
	ew.Printf("\n")
}

// goodputTargets checks issue 10's targets on the default Sluice legs.
func goodputTargets(g *GoodputReport) []Target {
	var ts []Target
	slo := g.SLOms
	for _, l := range g.Legs {
		if l.Path != pathSluice || l.Tuned != 0 {
			continue
		}
		at := fmt.Sprintf(" (%s, %gx, %s)", l.Trace, l.Load, l.Regime)
		ref := reference(g.Legs, l)
		switch {
		case l.Regime == regimeShed && ref != nil:
			ts = append(ts, Target{Name: "sluice / direct >= 0.98" + at,
				Measured: fmt.Sprintf("%s (%.0f / %.0f)", ratioText(l.InSLO, ref.InSLO), l.InSLO, ref.InSLO),
				Pass:     ref.InSLO > 0 && l.InSLO/ref.InSLO >= targetVsDirect})
			ts = append(ts, Target{Name: "sluice TTFT p99 of answered <= SLO" + at,
				Measured: benchkit.MsText(l.TTFTP99ms), Pass: l.TTFTP99ms <= slo})
		case l.Regime == regimeUnbounded && ref != nil:
			ts = append(ts, Target{Name: "sluice / pool in-time capacity >= 0.95" + at,
				Measured: fmt.Sprintf("%s (%.0f / %.0f)", ratioText(l.InSLO, ref.InSLO), l.InSLO, ref.InSLO),
				Pass:     ref.InSLO > 0 && l.InSLO/ref.InSLO >= targetVsPool})
		case l.Regime == regimeUnbounded:
			ts = append(ts, Target{Name: "sluice / pool in-time capacity >= 0.95" + at, Measured: "n/a: the shed regime's direct leg was not run", NA: true})
		}
		if x2 := findLeg(g.Legs, l.Trace, l.Load, l.Regime, pathSluice2); x2 != nil {
			ts = append(ts, Target{Name: "sluice x2 / sluice >= 0.95" + at,
				Measured: fmt.Sprintf("%s (%.0f / %.0f)", ratioText(x2.InSLO, l.InSLO), x2.InSLO, l.InSLO),
				Pass:     l.InSLO > 0 && x2.InSLO/l.InSLO >= targetReplicas})
		}
	}
	ts = append(ts, refusalTargets(g)...)
	if s := g.Sweep; s != nil {
		ts = append(ts, Target{Name: fmt.Sprintf("adaptive / best static limit >= 0.97 (%s, %gx, %s)", s.Trace, s.Load, s.Regime),
			Measured: fmt.Sprintf("%s (%.0f / %.0f at max_concurrency %d)", ratioText(s.AdaptiveInSLO, s.KneeInSLO), s.AdaptiveInSLO, s.KneeInSLO, s.Knee),
			Pass:     s.KneeInSLO > 0 && s.AdaptiveInSLO/s.KneeInSLO >= targetVsKnee})
	}
	if h := g.Honesty; h != nil {
		// The population: clients told to come back when the load
		// is back under capacity. All retries are printed beside it.
		t := Target{Name: "retries advised after the burst's end succeed >= 90%", NA: h.AfterRetried == 0,
			Measured: fmt.Sprintf("%.1f%% (%d of %d); all retries %.1f%% (%d of %d), %d advised during the burst",
				100*h.AfterShare, h.AfterOK, h.AfterRetried, 100*h.RetrySuccess, h.RetriedOK, h.Retried, h.DuringBurst),
			Pass: h.AfterShare >= targetHonesty}
		if t.NA {
			t.Measured = fmt.Sprintf("n/a: no retry advised after the burst's end (all retries %d of %d)", h.RetriedOK, h.Retried)
		}
		ts = append(ts, t)
	}
	return ts
}

// refusalTargets are checked over every default Sluice leg (one and two
// replicas): the worst leg is reported.
func refusalTargets(g *GoodputReport) []Target {
	var unann, noRA, refusals, legs int
	var worstA, worstQ *GLeg
	overQ := func(l *GLeg) float64 { return l.RefuseQueuedP99ms - 1000**l.DelayTargetS }
	missingTarget := false
	for _, l := range g.Legs {
		if l.Path == pathDirect || l.Tuned != 0 {
			continue
		}
		legs++
		unann += l.Unannounced
		noRA += l.RefusedNoRA
		refusals += l.RefusedWithRA + l.RefusedNoRA
		if l.RefusedAtArrival > 0 && (worstA == nil || l.RefuseArrivalP99ms > worstA.RefuseArrivalP99ms) {
			worstA = l
		}
		if l.RefusedAfterQueue > 0 {
			if l.DelayTargetS == nil {
				missingTarget = true
			} else if worstQ == nil || overQ(l) > overQ(worstQ) {
				worstQ = l
			}
		}
	}
	if legs == 0 {
		return nil
	}
	id := func(l *GLeg) string { return fmt.Sprintf("%s %gx %s %s", l.Trace, l.Load, l.Regime, l.Path) }
	ts := []Target{
		{Name: "zero unannounced failures through Sluice", Measured: fmt.Sprintf("%d over %d legs", unann, legs), Pass: unann == 0},
		{Name: "every Sluice refusal carries Retry-After", Measured: fmt.Sprintf("%d of %d without", noRA, refusals), Pass: noRA == 0},
	}
	t := Target{Name: "refusal p99 at arrival <= 50 ms (worst Sluice leg)", Measured: "no refusals at arrival", Pass: true}
	if worstA != nil {
		t.Measured = fmt.Sprintf("%s (%s)", benchkit.MsText(worstA.RefuseArrivalP99ms), id(worstA))
		t.Pass = worstA.RefuseArrivalP99ms <= ms(targetAtArrival)
	}
	ts = append(ts, t)
	t = Target{Name: "refusal p99 after queueing <= queue delay target + 50 ms (worst Sluice leg)", Measured: "no refusals after queueing", Pass: true}
	switch {
	case missingTarget:
		t = Target{Name: t.Name, NA: true, Measured: "n/a: the gateway does not export sluice_queue_delay_target_seconds"}
	case worstQ != nil:
		t.Measured = fmt.Sprintf("%s vs target %s + 50 ms (%s)", benchkit.MsText(worstQ.RefuseQueuedP99ms), benchkit.MsText(1000**worstQ.DelayTargetS), id(worstQ))
		t.Pass = overQ(worstQ) <= ms(targetQueueSlack)
	}
	return append(ts, t)
}

// pctText is a share as a percentage, "n/a" of nothing.
func pctText(n, of int) string {
	if of == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}
