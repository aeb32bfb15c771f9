package admission

import "time"

// Long streams and the window's samples.
//
// The limit learns from time to first token, fed when the token comes. A
// request therefore gives a sample when it starts, and with streams that
// last a minute (a reasoning model's answer) a request starts only when the
// limit rises or a stream ends. A window that waited for MinSamples (or, in
// slow start, est) samples then waited for streams to end: after a step
// 8 -> 12 only 4 streams could start, a window at 12 needed 10 samples, and
// the limit sat at a dozen while the backend had hundreds of free slots
// (docs/BENCHMARKS.md, "Streaming relay against nginx": 12 of 1,000
// streams held at a 1 s step).
//
// With ReportsEnds, a window needs no more samples than it could get: the
// starts the published limit allowed beyond what was in flight when it
// opened (grant), plus one per request that ended since (each frees a slot
// for a waiting one), at least one. Short requests end many times a window,
// so their windows need MinSamples as before; the bound binds only when
// samples are scarce because nothing ends. The window still lasts its
// length, and the latency its samples show still decides: a step up whose
// streams start slowly stops growth as before.
//
// A window whose samples are in may have nobody left to Observe after its
// time is up (every stream it let start has its first token and none
// ends). With Clock set, Limit, which the gateway's queue reads a few times
// a second while requests wait, closes it then (setDue, tick); the same
// for a probe that gets no sample because nothing ends below a quarter of
// the limit.

// Ended counts a request that ended, whatever its outcome, after its
// Observe if it had one: its slot is free for a request that will give a
// sample. Only counted with LimitConfig.ReportsEnds.
func (a *AdaptiveLimit) Ended() {
	if a.cfg.ReportsEnds {
		a.ends.Add(1)
	}
}

// possible is how many requests window w could have seen start.
func (a *AdaptiveLimit) possible(w *window) int {
	return w.grant + int(a.ends.Load()-w.ends0)
}

// need is how many samples window w needs to close once its time is up.
func (a *AdaptiveLimit) need(w *window) int {
	n := a.minSamples()
	if a.cfg.ReportsEnds {
		n = min(n, max(a.possible(w), 1))
	}
	return n
}

// nothingCouldStart reports a window in which no request could start: the
// limit was full at its last sample and stayed so (a rise too small to add
// a whole slot), and nothing ended. There is no sample to wait for; the
// backend holds what it held at the last one, whose latency stands (the
// gradient grows a limit of 9.3 by 0.6 a window, and would otherwise wait
// for a stream to end). A backend that hangs is not helped: once a slot
// is allowed, the window waits for that request's first token.
func (a *AdaptiveLimit) nothingCouldStart(w *window) bool {
	return a.cfg.ReportsEnds && w.n+w.busy == 0 && a.possible(w) == 0
}

// openWindow starts a window at now, counting the starts the limit just
// published allows beyond the in-flight requests of the latest sample.
func (a *AdaptiveLimit) openWindow(now time.Time) {
	a.win = window{start: now, grant: max(int(a.limit.Load())-a.lastInflight, 0),
		ends0: a.endsAtLast, inflight0: a.lastInflight}
}

// setDue records when Limit should look at the window or probe again
// without a new sample: when the window's time is up if its samples are
// in (or none could come), and when a probe gives up.
func (a *AdaptiveLimit) setDue(now time.Time) {
	if a.cfg.Clock == nil {
		return
	}
	var at time.Time
	switch w := &a.win; {
	case a.probing:
		at = a.probeGiveUp().Add(time.Nanosecond) // maybeEndProbe: strictly after
		if next := a.rateAt.Add(a.cfg.Window); a.cfg.ReportsEnds && a.probe.n == 0 && next.Before(at) {
			// Look again then whether the probe can still measure
			// (maybeEndProbe).
			at = next
		}
	case !w.start.IsZero() && (w.n+w.busy >= a.need(w) || a.nothingCouldStart(w)):
		at = w.start.Add(a.windowLength())
	}
	if at.IsZero() {
		a.due.Store(0)
		return
	}
	a.due.Store(at.UnixNano())
}

// tick is Limit's look at a window or probe that was due at d: only one
// caller takes it, and only once Clock says d has passed.
func (a *AdaptiveLimit) tick(d int64) {
	now := a.cfg.Clock()
	if now.UnixNano() < d || !a.due.CompareAndSwap(d, 0) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.probing {
		a.maybeEndProbe(now)
	} else {
		a.maybeCloseWindow(now)
	}
	a.setDue(now)
}
