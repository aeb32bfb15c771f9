package admission

import (
	"math"
	"time"
)

// Probes that cannot measure.
//
// A probe drops the limit to a quarter until a window of samples sent at
// that concurrency is in. It measures only once the requests in flight have
// fallen to the probe's limit, which takes as long as they take to end.
// Short requests end within a window; long streams (a minute each) do not:
// the probe gave up after probeTimeoutWindows windows plus
// probeTimeoutLatencies latencies without a sample, and for those 5-9 s
// nothing could start, every BaselineWindows/2 windows (about every 50 s).
// Envoy's adaptive concurrency pays the same price on purpose (its minRTT
// window pins concurrency low, with jitter so that hosts do not all probe
// at once); Gradient2 has no probe at all and tracks a long-term average
// instead, which drifts under sustained load.
//
// With ReportsEnds the limit knows the end rate, so it tells a probe that
// can measure from one that cannot: the requests in flight above the probe
// limit (the latest sample's in-flight count less the ends since: nothing
// starts during a probe while in flight is above its limit) must end, at
// the rate requests ended in the last window, and no faster than their
// average over about ten windows (streams started together in slow start
// end together: one window's burst of ends says little of the next), before
// the probe would give up. A probe due that cannot is skipped, costing nothing, and is tried
// again earlyProbeGap windows later (short requests may be back by then). A
// running probe is judged again at least every Window on the ends of the
// latest one, and ends as if it gave up as soon as it cannot measure in
// time (a mix of short requests, which end, and long streams, which hold
// in flight above the probe limit). The baseline then keeps its history:
// its minimum expires after BaselineWindows windows as without probes.

// startProbe starts the probe due at the close of window w, unless in-flight
// requests could not fall to its limit before it would give up.
func (a *AdaptiveLimit) startProbe(now time.Time, w window) {
	a.probeLimit = max(a.cfg.Min, int(a.est/probeDivisor))
	a.probeStart = now
	a.rateAt, a.rateEnds = w.start, w.ends0
	if a.cannotMeasure(now, a.endRate) {
		a.probesMissed++
		a.sinceProbe = max(a.cfg.BaselineWindows/2-earlyProbeGap, 0) // try again in earlyProbeGap windows
		return
	}
	a.probing = true
	a.probesRun++
	a.probe = window{}
}

// inflightNow estimates the requests in flight: the latest sample's count
// less the ends since. Requests started since are not counted, so it is
// low (a probe is judged able to measure when it may not be) except during
// a probe, when nothing starts while in flight is above the probe limit.
func (a *AdaptiveLimit) inflightNow() int {
	return max(a.lastInflight-int(a.ends.Load()-a.endsAtLast), 0)
}

// noteEnds folds the end rate of window w, closing at now, into endRate.
func (a *AdaptiveLimit) noteEnds(now time.Time, w window) {
	if !a.cfg.ReportsEnds || !now.After(w.start) {
		return
	}
	rate := float64(a.ends.Load()-w.ends0) / now.Sub(w.start).Seconds()
	if a.windows <= 1 {
		a.endRate = rate
		return
	}
	a.endRate += endRateWeight * (rate - a.endRate)
}

// cannotMeasure reports a probe whose limit in-flight requests cannot fall
// to before it gives up, at the end rate since rateAt, or at most ceiling.
func (a *AdaptiveLimit) cannotMeasure(now time.Time, ceiling float64) bool {
	if !a.cfg.ReportsEnds {
		return false
	}
	excess := a.inflightNow() - a.probeLimit
	span := now.Sub(a.rateAt)
	if excess <= 0 || span < a.cfg.Window/4 {
		return false
	}
	rate := min(float64(a.ends.Load()-a.rateEnds)/span.Seconds(), ceiling)
	return float64(excess) > rate*a.probeGiveUp().Sub(now).Seconds()
}

// maybeEndProbe ends a probe once it has a full window of samples sent at the
// probe concurrency, or gives up when traffic is too thin to get them or
// in-flight requests cannot fall to its limit in time (cannotMeasure, judged
// on the ends of the latest Window).
func (a *AdaptiveLimit) maybeEndProbe(now time.Time) {
	p := a.probe
	done := p.n > 0 && p.n >= a.cfg.MinSamples && now.Sub(p.start) >= a.cfg.Window
	giveUp := now.After(a.probeGiveUp())
	if !done && !giveUp && p.n == 0 && now.Sub(a.rateAt) >= a.cfg.Window {
		if a.cannotMeasure(now, math.Inf(1)) {
			giveUp = true
			a.probesMissed++
		}
		a.rateAt, a.rateEnds = now, a.ends.Load()
	}
	if !done && !giveUp {
		return
	}
	if p.n > 0 {
		// The probe is the one deliberate no-load measurement: it replaces
		// the history, so a backend that really became slower is tracked at
		// the next probe instead of after BaselineWindows.
		a.hist = a.hist[:0]
		a.histNext = 0
		a.remember(p.sum / float64(p.n))
	}
	a.probing = false
	a.sinceProbe = 0
	a.highStreak = 0
	a.publish()
	a.openWindow(now)
}

// probeGiveUp is when a probe too short of samples gives up.
func (a *AdaptiveLimit) probeGiveUp() time.Time {
	return a.probeStart.Add(probeTimeoutWindows*a.cfg.Window +
		time.Duration(probeTimeoutLatencies*a.short*float64(time.Second)))
}
