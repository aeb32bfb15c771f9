package admission

import "time"

// Streams go ahead of the slack of requests that do not stream. A
// non-streamed request with Slack (answerwait.go) may wait that much longer
// than a stream because its client sees nothing before its whole answer;
// a stream's client waits for the first token alone. Ordered by fair tags
// only, the non-streams queued within their slack stood ahead of the
// streams that came after them, and a stream's estimate counted their
// work: at answer_token_wait 20ms the mix scenario (bench/overload
// --scenarios mix) refused streams at arrival behind non-streams that
// could have waited (short streams at 4x: 217-230 in SLO -> 46-51). Now,
// while a waiter is within its slack (dueOf after now: its class and flow
// not congested):
//
//   - dispatch serves, in fair order, the waiters of its class that are
//     not within their slack before it (nextIn); only when none waits
//     (or the one found is held by its tenant's ramp) does it go in its own
//     turn, so no slot is left idle for it;
//   - the wait estimates of a request without slack (refuseLongWait at
//     arrival, the target review's startsSoon and withMargin) leave out
//     the cost of the waiters still within their slack a delay target
//     from now (skipsSlack): the stream is served before them, or refused
//     at its target anyway.
//
// Once its slack has run out (or its class congests) a non-stream is
// ordered by its tags again, which are older than the streams that went
// ahead of it: it goes next, with its first-token budget still to run.

// deferred reports whether waiter w yields its turn at now to waiters
// without slack: it has Slack and is still within it.
func (q *Queue) deferred(w *waiter, now time.Time) bool {
	return w.req.Slack > 0 && q.dueOf(w).After(now)
}

// skipsSlack returns the waiters to leave out of the wait estimate of a
// request r at now: those within their slack a delay target from now,
// which r goes ahead of (see above). nil when r has slack itself (it is
// ordered by its tags among them) or its class has no delay target.
func (q *Queue) skipsSlack(r Request, now time.Time) func(*waiter) bool {
	d := q.classes[r.Class].delay
	if r.Slack > 0 || !d.on() {
		return nil
	}
	horizon := now.Add(d.target)
	return func(o *waiter) bool { return o.req.Slack > 0 && q.dueOf(o).After(horizon) }
}

// nextIn is the waiter class c serves next at now (not removed): its
// head, unless the head is within its slack; then the first waiter by
// tags that is not, if its tenant's ramp does not hold it. The
// starvation guard charges this one (next), not the head it yields to.
func (q *Queue) nextIn(c *class, now time.Time, capacity int) *waiter {
	h := c.head()
	if !q.deferred(h, now) {
		return h
	}
	var best *waiter
	for _, f := range c.active {
		for _, w := range f.waiters {
			if q.deferred(w, now) {
				continue
			}
			if best == nil || w.finish < best.finish || w.finish == best.finish && w.seq < best.seq {
				best = w
			}
			break // a flow's tags increase along it
		}
	}
	if best == nil || q.headHeld(best, now, capacity) {
		return h
	}
	return best
}

// take removes w, nextIn's, from class c and advances its virtual time to
// w's tag (the head's, or the one served ahead of it).
func (c *class) take(w *waiter) {
	c.vtime = max(c.vtime, w.finish)
	c.remove(w)
}
