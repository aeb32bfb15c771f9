package admission

import "time"

// The queue's discipline under sustained overload is controlled delay, after
// CoDel (Nichols and Jacobson, 2012) and Facebook's adaptive queue timeout.
// A queue absorbs a burst; it does not add capacity. When arrivals outrun
// the pool for longer than a burst, a queue bounded only by deadlines fills
// up to them: every request waits nearly its whole time-to-first-token
// budget, answers come late or at the edge of the objective, and nothing is
// served faster for it, because the pool was busy either way. So each
// class, and each flow in it (one tenant: flowdelay.go), watches the
// sojourn time of its waiters (arrival to grant, or to now for the oldest
// still waiting) against the class's target; the rules below act on a
// waiter whose flow or class is congested, unless its tenant is light (at
// most half its fair share of the pool's work):
//
//   - Sojourns above the target for less than an interval are a burst: the
//     queue keeps what can still start before its deadline.
//   - Above the target for a whole interval, the flow is congested: an
//     arrival whose estimated wait exceeds the target is refused at once,
//     and a waiter whose sojourn reaches the target is shed from the head
//     (refused, 503 with Retry-After) rather than granted. Waits converge to
//     the target; the pool stays busy because the queue never empties.
//   - Every waiter is reviewed once, when it reaches the target (its own
//     timer, or a Kick): shed if its flow is congested then, refused if
//     its re-estimated wait no longer fits before its deadline, else kept
//     and never shed afterwards. Refusals after queueing therefore come at
//     the target, not later, and nothing admitted in a burst is thrown
//     away after the queue waited for it longer than the target.
//   - A grant of the flow after less than half the target, or an empty
//     class with a free slot (a request granted at once), ends congestion. (Half, not the target itself: in congestion nothing
//     waits longer than the target, so "below the target" alone would end
//     it at the next grant and the queue would flap between the two modes.)
//
// The interval is twice the target. Measuring time rather than queue length
// keeps the rule right whatever the request sizes and the pool's speed.
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

// bound is the longest wait the flow admits an arrival for while
// congested; 0 when it is not congested (only the deadline bounds a wait).
func (d *codel) bound() time.Duration {
	if d.congested {
		return d.target
	}
	return 0
}
