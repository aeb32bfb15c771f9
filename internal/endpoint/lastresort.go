package endpoint

import "time"

// A pool whose every backend is out of rotation only because of passive
// ejection (max_fails within fail_timeout) is not refused for the rest of
// fail_timeout: its ejected backends are offered as a last resort, one
// request at a time each, a trial (routing.SelectTrial). A trial that
// succeeds ends the ejection; one that fails leaves it in force (its
// failure counts as any). nginx does the like: it never marks the only
// server of an upstream unavailable, and when all are it tries them again;
// Envoy's panic mode routes to every host below a healthy share.
//
// Not offered: a backend the active health check holds down (a probe
// says it is broken, now), and one whose circuit breaker refuses calls:
// the breaker has its own trials (half-open, after open_for, which make
// the backend a candidate again here) and its own pool-wide cap, and a
// trial there would be refused at AllowCall anyway. Draining and retired
// backends are not in a pool's backends.

// trialStale is how long a trial handed out may stay outstanding while the
// backend has nothing in flight: a pick that was never sent (a hedge's
// alternative, a slot lost to a race) frees the trial after it.
const trialStale = time.Second

// LastResort reports whether b is a last resort at now: out of rotation by
// passive ejection alone, its breaker (if any) would admit a call. Its
// pool, with nothing usable, serves through it, one trial at a time; what
// /readyz counts as a model still served.
func (b *Backend) LastResort(now time.Time) bool {
	b.mu.Lock()
	ejectedOnly := !b.probeDown && now.Before(b.ejectUntil)
	b.mu.Unlock()
	if !ejectedOnly {
		return false
	}
	br := b.brk.Load()
	return br == nil || br.Ready(now)
}

// TrialReady reports whether b may be given a last-resort trial at now:
// a last resort (LastResort) with no trial outstanding.
func (b *Backend) TrialReady(now time.Time) bool {
	return b.LastResort(now) && b.trialFree(now, b.trialAt.Load())
}

// trialFree reports whether a trial may be handed out given the last one,
// handed out at at (UnixNano, 0: none outstanding).
func (b *Backend) trialFree(now time.Time, at int64) bool {
	if at == 0 {
		return true
	}
	idle := b.inflight.Load() == 0 && b.cpuInflight.Load() == 0
	return idle && now.UnixNano()-at >= int64(trialStale)
}

// ClaimTrial takes b's trial at now; false when another request took it
// first. The request then goes to b like any other; its end frees the
// trial (endTrial), its success ends the ejection (trialSucceededLocked).
func (b *Backend) ClaimTrial(now time.Time) bool {
	at := b.trialAt.Load()
	if !b.trialFree(now, at) {
		return false
	}
	return b.trialAt.CompareAndSwap(at, max(now.UnixNano(), 1))
}

// Trialling reports whether a trial is outstanding.
func (b *Backend) Trialling() bool { return b.trialAt.Load() != 0 }

// endTrial frees the trial when a request on b ends. Any request's end
// does: the trial's own end is not told apart, so at worst a second trial
// starts while the first is in flight.
func (b *Backend) endTrial() {
	if b.trialAt.Load() != 0 {
		b.trialAt.Store(0)
	}
}

// trialSucceededLocked ends a passive ejection on a success while a trial
// is outstanding: the backend answers again. b.mu is held.
func (b *Backend) trialSucceededLocked() {
	if b.trialAt.Load() == 0 || b.ejectUntil.IsZero() {
		return
	}
	b.ejectUntil = time.Time{}
	b.failTimes = b.failTimes[:0]
}

// BackAt is the earliest time b may serve again, as far as it is known at
// now: now for a usable backend or one with a trial outstanding (its
// answer is due), the end of its passive ejection or of its breaker's open
// time, whichever is later; ok is false when it is not known (held down by
// the active health check, or a half-open breaker with its trials taken).
func (b *Backend) BackAt(now time.Time) (at time.Time, ok bool) {
	b.mu.Lock()
	down, until := b.probeDown, b.ejectUntil
	b.mu.Unlock()
	if down {
		return time.Time{}, false
	}
	if b.Trialling() && now.Before(until) {
		return now, true
	}
	at = now
	if until.After(at) {
		at = until
	}
	if br := b.brk.Load(); br != nil && !br.Ready(now) {
		open := br.Stats(now).OpenUntil
		if open.IsZero() {
			return time.Time{}, false
		}
		if open.After(at) {
			at = open
		}
	}
	return at, true
}
