package admission

import (
	"cmp"
	"math"
	"slices"
	"time"
)

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
// When its slack runs out a non-stream arrives afresh (rearrive): it goes
// to the back of its flow, tagged as a request arriving then, so it
// competes with the streams as one that came Slack after it did. Ordered
// by its older tags instead (branch streamslack), every non-stream whose
// slack ran out took the next slots ahead of the streams that had queued
// meanwhile: at 2x and 4x the mix's short streams in SLO fell by a
// third. Kept yielding until its deadline instead, the streams' backlog
// starved it. If its flow or class is congested when its slack runs out,
// it had no slack (dueOf) and keeps its place, as a stream would.

// deferred reports whether waiter w yields its turn at now to waiters
// without slack: it has Slack and is still within it, or its class is
// refusing streams (refusing).
func (q *Queue) deferred(w *waiter, now time.Time) bool {
	return w.req.Slack > 0 && (q.dueOf(w).After(now) || q.refusing(w.req.Class, now))
}

// refusing reports whether class c is refusing a large share of the
// requests without slack (streams) it has been sent lately: overloaded,
// the streams it serves are refused for want of room. Then a non-stream
// past its slack still yields to the streams queued, and is left out of
// their estimates: the slots it took past its slack were the ones the
// refused streams lacked (the mix at 2x and 4x: short streams in SLO down
// by a third with the non-streams merely arriving afresh). It is refused
// at its target review if it cannot start soon after all, as a stream is.
// Not at every refusal: the mix at 1.2x refuses about 30% of its streams,
// in bursts, and non-streams yielding through them (at every refusal, or
// over 40% refused) lost their gain there. Over 60%: the 1.2x gain kept,
// streams up at 4x, but at 2x (about half refused) the streams still lose
// (docs/RELIABILITY.md, branch tokwait2), so answer_token_wait stays off.
// The share is the crude part; see Left there.
func (q *Queue) refusing(cl Class, now time.Time) bool {
	c := q.classes[cl]
	return c.delay.on() && c.streams.overloaded(now)
}

// noteArrival and noteRefused count r's arrival and refusal at now for
// refusing, if r has no slack.
func (q *Queue) noteArrival(r Request, now time.Time) {
	if r.Slack <= 0 {
		q.classes[r.Class].streams.add(now, 1, 0)
	}
}

func (q *Queue) noteRefused(r Request, now time.Time) {
	if r.Slack <= 0 {
		q.classes[r.Class].streams.add(now, 0, 1)
	}
}

// refusalShare is a class's arrivals without slack and their refusals,
// each decayed with a time constant of refusalWindow.
type refusalShare struct {
	arrived, refused float64
	at               time.Time
}

const (
	refusalWindow    = 2 * time.Second
	refusalOverload  = 0.6 // share refused over which the class counts as overloaded
	refusalMinSample = 4   // decayed arrivals below which it never does
)

func (s *refusalShare) decay(now time.Time) {
	if dt := now.Sub(s.at); dt > 0 && !s.at.IsZero() {
		k := math.Exp(-float64(dt) / float64(refusalWindow))
		s.arrived *= k
		s.refused *= k
	}
	if now.After(s.at) {
		s.at = now
	}
}

func (s *refusalShare) add(now time.Time, arrived, refused float64) {
	s.decay(now)
	s.arrived += arrived
	s.refused += refused
}

func (s *refusalShare) overloaded(now time.Time) bool {
	s.decay(now)
	return s.arrived >= refusalMinSample && s.refused > refusalOverload*s.arrived
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
	if q.refusing(r.Class, now) {
		return func(o *waiter) bool { return o.req.Slack > 0 }
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

// rearrive moves each waiter of class c whose slack ran out by now to the
// back of its flow, tagged afresh (as unparkParked tags a held one): in
// the order their slack ran out, before the arrival or grant at now is
// decided, so the order is the one they would have had arriving then. One
// whose flow or class is congested then keeps its place (it had no slack:
// dueOf), as does one that kept an appointment (ahead of its flow) or was
// held by its tenant's ramp (tagged afresh when let go). Under q.mu.
func (q *Queue) rearrive(c *class, now time.Time) {
	if c.slackWaiters == 0 {
		return
	}
	var ran []*waiter
	pending := 0
	for _, f := range c.active {
		for _, w := range f.waiters {
			switch {
			case w.req.Slack <= 0 || w.rearrived:
			case w.appointed || w.heldOnce:
				w.rearrived = true
			case w.due().After(now):
				pending++
			default:
				ran = append(ran, w)
			}
		}
	}
	c.slackWaiters = pending
	slices.SortFunc(ran, func(a, b *waiter) int {
		if d := a.due().Compare(b.due()); d != 0 {
			return d
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for _, w := range ran {
		w.rearrived = true
		key := w.flow.key
		if c.flowOrClass(key).congested {
			continue
		}
		credit := c.credit // the starvation guard's, kept if the class empties for a moment
		c.giveBack(w)
		c.remove(w)
		w.start, w.finish = c.tags(key, w.cost, q.flowWeight(w.req))
		c.push(key, w)
		c.credit = credit
	}
}

// giveBack moves the tags of the waiters behind w in its flow back by w's
// share (no further than the class's virtual time), as if w had not been
// there: it leaves its place to arrive afresh behind them, and its tenant
// is charged for it once, at its new place. (If class.remove comes to
// refund every unserved waiter's share itself, this goes.)
func (c *class) giveBack(w *waiter) {
	f := w.flow
	i := slices.Index(f.waiters, w)
	if i < 0 || i == len(f.waiters)-1 {
		return // the last: remove rolls the flow's tag back
	}
	shift := min(w.finish-w.start, f.waiters[i+1].start-c.vtime)
	if shift <= 0 {
		return
	}
	for _, o := range f.waiters[i+1:] {
		o.start -= shift
		o.finish -= shift
	}
	f.lastFinish -= shift
}
