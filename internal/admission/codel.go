package admission

import "time"

// The queue's discipline under overload is controlled delay, after CoDel
// (Nichols and Jacobson, 2012) and Facebook's adaptive queue timeout. A
// queue absorbs a burst; it does not add capacity. Bounded only by
// deadlines, it fills up to them: every request waits nearly its whole
// time-to-first-token budget, answers come late or at the edge of the
// objective, and nothing is served faster for it, because the pool was busy
// either way. So each class has a delay target (a quarter of its objective
// by default) and the rules below act on every waiter whose tenant is not
// light (at most half its fair share of the pool's work: flowdelay.go):
//
//   - An arrival whose estimated wait exceeds the target is refused at
//     once (503 with Retry-After), however far its deadline.
//   - Every waiter is reviewed once, when it reaches the target (its own
//     timer, or a Kick): one that cannot start within the target — more
//     than a tenth of the target's worth of work still ahead of it, beyond
//     the next slot to free — is refused then; one about to start is kept
//     (committed) and refused only if its Latest passes after all. So
//     refusals after queueing come at the target, not at the latest moment
//     a start would still be of use.
//   - The class, and each flow in it (one tenant: flowdelay.go), watches
//     the sojourn times of its waiters (arrival to grant, or to now for the
//     oldest still waiting); above the target for a whole interval (twice
//     the target), it is congested: a waiter that reaches the target before
//     its review (a late timer) is shed from the head rather than granted,
//     and sluice_queue_congested says so. A grant after less than half the
//     target, or an empty class with a free slot, ends congestion. (Half,
//     not the target itself: in congestion nothing waits longer than the
//     target, so "below the target" alone would end it at the next grant.)
//
// The target was a congestion-only bound at first, arrivals in a burst being
// admitted up to their deadlines. Measured (sluice demo: bursts of 2s at 2x
// the pool's capacity, 2s objective), that let the queue grow to a second of
// waiting: p99 time to first token 1.5s against 0.7s for plain round robin
// in front of simulators with an 8-deep queue. A queue holding a target's
// worth of work already keeps every slot fed between bursts, so what
// waiting past the target adds is mostly latency. Measuring time rather
// than queue length keeps the rule right whatever the request sizes and the
// pool's speed.
type codel struct {
	target, interval time.Duration
	firstAbove       time.Time // when sojourns above target started counting; zero = not above
	congested        bool
}

func newCodel(target time.Duration) codel {
	return codel{target: target, interval: 2 * target}
}

// on reports whether the discipline is enabled.
func (d *codel) on() bool { return d.target > 0 }

// observe feeds one sojourn time measured at now: a grant's wait, or the
// age of a waiter still queued (which only grows, so it is as telling).
func (d *codel) observe(now time.Time, sojourn time.Duration) {
	if !d.on() {
		return
	}
	switch {
	case sojourn < d.target/2:
		d.reset()
	case sojourn < d.target:
		d.firstAbove = time.Time{}
	case d.firstAbove.IsZero():
		d.firstAbove = now.Add(d.interval)
	case !now.Before(d.firstAbove):
		d.congested = true
	}
}

// reset ends congestion: the flow drained.
func (d *codel) reset() {
	d.firstAbove = time.Time{}
	d.congested = false
}

// over reports whether a waiter enqueued at enqueued is past the target at
// now while the flow is congested: it is to be shed, not granted.
func (d *codel) over(enqueued, now time.Time) bool {
	return d.congested && now.Sub(enqueued) >= d.target
}
