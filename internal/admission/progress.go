package admission

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Place is where a queued request stands, for clients that asked to be
// told while they wait.
type Place struct {
	// Position counts the waiters the schedule serves before this one,
	// plus one: 1 is next. Waiters of higher classes count only up to the
	// starvation guard's share (MinShare), as in the wait estimate.
	Position int
	// Wait is the estimated time left until the request is granted (the
	// cost served before it over the measured drain rate); Start is now
	// plus Wait. Wait is MaxWait when the pool has no capacity.
	Wait  time.Duration
	Start time.Time
	// Waited is how long the request has been queued.
	Waited time.Duration
}

// MaxWait is the Wait of a request that cannot be estimated: the pool has
// no capacity or measures no drain.
const MaxWait = maxWait

// Progress asks AcquireWithProgress to report a queued request's place:
// once when it is queued, then on every receive from Tick (a ticker in
// production, a channel the test sends on). Report runs on the caller's
// goroutine, without the queue's lock, so it may write to the client; a
// slow Report delays only its own request's wake-ups. A request granted or
// refused at arrival is never reported.
type Progress struct {
	Tick   <-chan time.Time
	Report func(Place)
}

// AcquireWithProgress is Acquire for a caller that tells its client where
// it stands while queued (see Progress).
func (q *Queue) AcquireWithProgress(ctx context.Context, r Request, p Progress) (*Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	t, w, err := q.submit(r)
	if t != nil || err != nil {
		return t, err
	}
	if p.Report == nil {
		return q.wait(ctx, w, nil)
	}
	q.report(w, p.Report)
	return q.wait(ctx, w, &p)
}

// report sends w's place to fn unless w was decided meanwhile.
func (q *Queue) report(w *waiter, fn func(Place)) {
	if pl, ok := q.placeOf(w); ok {
		fn(pl)
	}
}

// placeOf is a waiting waiter's place; ok is false once it is decided.
func (q *Queue) placeOf(w *waiter) (Place, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.state != waiting {
		return Place{}, false
	}
	now := q.clock()
	cost, n := q.ahead(w, now)
	wait := q.drain.waitFor(cost, q.capacity())
	pl := Place{Position: n + 1, Wait: wait, Waited: max(now.Sub(w.enqueued), 0)}
	if wait < maxWait {
		pl.Start = now.Add(wait)
	}
	return pl, true
}

// ahead is the cost and number of waiters the schedule serves before w:
// higher classes within the starvation guard, its own flow's earlier
// waiters, other flows' waiters with lower finish tags, less those within
// their slack that w goes ahead of at now (skipsSlack). Under q.mu.
func (q *Queue) ahead(w *waiter, now time.Time) (cost float64, n int) {
	skip := q.skipsSlack(w.req, now)
	var higher float64
	var higherN int
	for _, c := range q.classes[:w.req.Class] {
		higher += c.cost
		higherN += c.n
	}
	var same float64
	for _, f := range q.classes[w.req.Class].active {
		for _, o := range f.waiters {
			if o == w || (f != w.flow && o.finish > w.finish) {
				break
			}
			if skip != nil && skip(o) {
				continue
			}
			same += o.cost
			n++
		}
	}
	if s := q.cfg.MinShare; s > 0 && higher > 0 {
		capped := min(higher, (same+w.cost)*(1-s)/s)
		higherN = int(math.Ceil(float64(higherN) * capped / higher))
		higher = capped
	}
	return higher + same, n + higherN
}
