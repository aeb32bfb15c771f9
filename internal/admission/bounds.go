package admission

import (
	"fmt"
	"math"
	"time"
)

// This file holds the queue's bookkeeping: bounds, the over-share test, wait
// estimates and slot accounting. Everything here runs under q.mu.

// admit checks the bounds for a request about to queue. When the total bound
// is reached and the arriving tenant is within its fair share, the newest
// request of the tenant most over its share is pushed out to make room, so a
// flood cannot lock the well-behaved out of a full queue. A queue already
// over a bound (lowered by SetConfig) pushes nobody out: a push-out trades
// one waiter for another and cannot bring it under, so arrivals are
// refused until its waiters drain below the bound.
func (q *Queue) admit(r Request) *Rejection {
	capacity := q.capacity()
	ts := q.tenants[r.Tenant]
	var queued int
	var cost float64
	if ts != nil {
		queued, cost = ts.queued, ts.cost
	}
	if queued+1 > q.cfg.MaxQueuedPerTenant ||
		(q.cfg.MaxQueuedCostPerTenant > 0 && cost+r.Cost > q.cfg.MaxQueuedCostPerTenant) {
		return q.tenantFull(r.Tenant, r.Weight, capacity)
	}
	if q.cfg.MaxQueuedCost > 0 && r.Cost > q.cfg.MaxQueuedCost {
		return q.queueFull(capacity) // could never fit, whoever left
	}
	over := q.queued > q.cfg.MaxQueued || (q.cfg.MaxQueuedCost > 0 && q.queuedCost > q.cfg.MaxQueuedCost)
	for q.queued+1 > q.cfg.MaxQueued || (q.cfg.MaxQueuedCost > 0 && q.queuedCost+r.Cost > q.cfg.MaxQueuedCost) {
		if q.overShare(r.Tenant, r.Weight, r.Cost) {
			return q.tenantFull(r.Tenant, r.Weight, capacity)
		}
		if over {
			return q.queueFull(capacity)
		}
		victim := q.pushOutVictim(r)
		if !q.cfg.Fair || victim == nil {
			return q.queueFull(capacity)
		}
		q.dequeue(victim)
		q.refuse(victim, q.tenantFull(victim.req.Tenant, victim.req.Weight, capacity))
	}
	return nil
}

func (q *Queue) queueFull(capacity int) *Rejection {
	return q.rejection(QueueFull, "", q.drain.waitFor(0, capacity), 0)
}

// tenantFull is a TenantQueueFull refusal. Its retry estimate is the time for
// the tenant's next queued request to be granted while it shares the drain
// with the other waiting tenants by weight.
func (q *Queue) tenantFull(tenant string, weight float64, capacity int) *Rejection {
	ahead := 0.0
	if ts := q.tenants[tenant]; ts != nil && ts.queued > 0 {
		ahead = ts.cost / float64(ts.queued) * q.activeWeight(tenant, weight) / weight
	}
	return q.rejection(TenantQueueFull, tenant, q.drain.waitFor(ahead, capacity), 0)
}

// pushOutVictim is the newest waiter of the tenant with the most queued cost
// per unit of weight, if that tenant is over its fair share of the queue
// with the arriving request r counted in.
func (q *Queue) pushOutVictim(r Request) *waiter {
	var worst *tenantState
	var worstName string
	for name, ts := range q.tenants {
		if name != r.Tenant && ts.queued > 0 && (worst == nil || ts.cost/ts.weight > worst.cost/worst.weight) {
			worst, worstName = ts, name
		}
	}
	if worst == nil {
		return nil
	}
	weights := q.activeWeight(worstName, worst.weight)
	if ts := q.tenants[r.Tenant]; ts == nil || ts.queued == 0 {
		weights += r.Weight
	}
	if worst.cost <= (q.queuedCost+r.Cost)*worst.weight/weights*(1+1e-9) {
		return nil
	}
	var victim *waiter
	for _, w := range q.parked {
		if w.req.Tenant == worstName && (victim == nil || w.seq > victim.seq) {
			victim = w
		}
	}
	for _, c := range q.classes {
		for _, f := range c.active {
			for _, w := range f.waiters {
				if w.req.Tenant == worstName && (victim == nil || w.seq > victim.seq) {
					victim = w
				}
			}
		}
	}
	return victim
}

// overShare reports whether tenant's queued cost, plus extra, exceeds its
// weighted fair share of the queue's cost (plus extra): the share among the
// tenants with something queued, it included.
func (q *Queue) overShare(tenant string, weight, extra float64) bool {
	own := extra
	if ts := q.tenants[tenant]; ts != nil {
		own += ts.cost
	}
	share := (q.queuedCost + extra) * weight / q.activeWeight(tenant, weight)
	return own > share*(1+1e-9)
}

// overPoolShare reports whether tenant's work in the pool, queued and in
// service, plus extra, exceeds its weighted fair share of all the pool's
// work among the tenants that have some. It decides who is to blame when a
// deadline cannot be met: a tenant alone in the queue while others are being
// served is still the one asking for more than its share.
func (q *Queue) overPoolShare(tenant string, weight, extra float64) bool {
	own, share := q.poolShare(tenant, weight, extra)
	return own > share*(1+1e-9)
}

// poolShare is tenant's work in the pool, queued and in service, plus
// extra (own), and its weighted fair share of all the pool's work among
// the tenants that have some (share). Spare tickets (hedges, jobs in spare
// capacity) are left out: they give their slots back to the first live
// request that would wait, so they are no tenant's share. Counted, a
// hedge racing made its own tenant a second one, and a client alone in
// the pool was refused as over its share (429) instead of saturated.
func (q *Queue) poolShare(tenant string, weight, extra float64) (own, share float64) {
	own, total, weights := extra, extra+q.queuedCost, weight
	for name, ts := range q.tenants {
		live := ts.inUseCost - ts.spareCost
		total += live
		switch {
		case name == tenant:
			own += ts.cost + live
		case ts.queued > 0 || ts.inUse > ts.spareInUse:
			weights += ts.weight
		}
	}
	return own, total * weight / weights
}

// activeWeight is the sum of the weights of tenants with queued requests,
// counting tenant with the given weight whether or not it has any.
func (q *Queue) activeWeight(tenant string, weight float64) float64 {
	sum := weight
	for name, ts := range q.tenants {
		if name != tenant && ts.queued > 0 {
			sum += ts.weight
		}
	}
	return sum
}

// waitFor estimates how long w would wait: the cost served before it (higher
// classes, then its own class in fair order) over the drain rate. A lower
// class is served at least at its guaranteed share even while higher classes
// stay backlogged, which bounds how much of their cost counts. Waiters
// within their slack that w goes ahead of are left out (skipsSlack).
func (q *Queue) waitFor(w *waiter, key string, now time.Time, capacity int, at int) time.Duration {
	var higher float64
	for _, c := range q.classes[:w.req.Class] {
		higher += c.cost
	}
	same := q.classes[w.req.Class].costAhead(key, w.finish, at, q.skipsSlack(w.req, now))
	if s := q.cfg.MinShare; s > 0 {
		higher = min(higher, (same+w.cost)*(1-s)/s)
	}
	return q.drain.waitFor(higher+same, capacity)
}

func (q *Queue) waitingAtOrAbove(c Class) bool {
	for _, cl := range q.classes[:c+1] {
		if cl.n > 0 {
			return true
		}
	}
	return false
}

func (q *Queue) flowKey(r Request) string {
	if q.cfg.Fair {
		return r.Tenant
	}
	return ""
}

func (q *Queue) flowWeight(r Request) float64 {
	if q.cfg.Fair {
		return r.Weight
	}
	return 1
}

func (q *Queue) tenant(name string) *tenantState {
	ts := q.tenants[name]
	if ts == nil {
		ts = &tenantState{weight: 1}
		q.tenants[name] = ts
	}
	return ts
}

func (q *Queue) forgetIdle(name string, ts *tenantState) {
	if ts.queued == 0 && ts.inUse == 0 {
		delete(q.tenants, name)
	}
}

func (q *Queue) enqueue(key string, w *waiter, at int) {
	q.classes[w.req.Class].insertAt(key, w, at)
	q.account(w)
}

// account counts w as queued.
func (q *Queue) account(w *waiter) {
	q.queued++
	q.queuedCost += w.cost
	ts := q.tenant(w.req.Tenant)
	ts.queued++
	ts.cost += w.cost
	ts.weight = w.req.Weight
}

// dequeue takes a waiter out of its class; unqueue does the accounting that
// next and dequeue share.
func (q *Queue) dequeue(w *waiter) {
	if w.parked {
		q.unpark(w)
	} else {
		q.classes[w.req.Class].remove(w)
	}
	q.unqueue(w)
}

func (q *Queue) unqueue(w *waiter) {
	q.queued--
	q.queuedCost -= w.cost
	if q.queued == 0 {
		q.queuedCost = 0 // no float residue
	}
	ts := q.tenants[w.req.Tenant]
	ts.queued--
	ts.cost -= w.cost
	if ts.queued == 0 {
		ts.cost = 0
	}
	q.forgetIdle(w.req.Tenant, ts)
}

// grant takes a slot for a live request and records it for the ramp.
// grant gives r a slot (cost: its waiter's). A grant above the tenant
// ramp's base is its probe (rampprobe.go); capacity is the queue's, 0 when
// no ramp applies (an opened queue).
func (q *Queue) grant(r Request, cost float64, now time.Time, waited time.Duration, capacity int) *Ticket {
	probe := false
	if r.Streams && capacity > 0 && q.rampOn() {
		probe, _ = q.beyondBase(r.Tenant, r.rampFit(), now, capacity)
	}
	t := q.takeSlot(r.Tenant, r.Weight, cost, now, waited)
	t.streams, t.level = r.Streams, q.inUse
	if q.probe.out != nil {
		t.level-- // a probe not yet started promptly proves no slot
	}
	if probe {
		q.startProbe(t)
	}
	q.noteGrant(r.Tenant, now)
	return t
}

func (q *Queue) takeSlot(tenant string, weight, cost float64, now time.Time, waited time.Duration) *Ticket {
	q.inUse++
	ts := q.tenant(tenant)
	ts.inUse++
	ts.inUseCost += cost
	if ts.queued == 0 {
		ts.weight = weight
	}
	t := &Ticket{q: q, tenant: tenant, cost: cost, granted: now, waited: waited}
	q.serving[t] = struct{}{}
	return t
}

// nextFree estimates how soon a slot frees when every slot is taken, from
// the tickets in service: each is expected to hold its slot for its cost
// at the measured rate per slot, so one granted that long ago (or longer)
// is about to end, and its slot with it. The drain's "one more slot must
// free" (drainEstimator.waitFor) is a mean hold spread over the slots
// whatever the tickets out have done: behind one long request on a
// one-slot backend, a request arriving a moment before it ends was told
// the whole mean hold, refused, and its Retry-After (the same again) not
// kept. ok is false when the estimate cannot say: slots free or fewer
// than the tickets out (capacity shrank), or the rate still the prior.
// O(tickets out); it runs only for a request that would queue.
func (q *Queue) nextFree(now time.Time, capacity int) (time.Duration, bool) {
	if capacity <= 0 || q.inUse != capacity || len(q.serving) != q.inUse || !q.drain.measured {
		return 0, false
	}
	rate := q.drain.perSlot()
	if !(rate > 0) || math.IsInf(rate, 0) {
		return 0, false
	}
	next := maxWait
	for t := range q.serving {
		hold := t.cost / rate * float64(time.Second)
		if hold >= float64(maxWait) {
			continue // past any wait: this one does not free the slot
		}
		next = min(next, max(time.Duration(hold)-now.Sub(t.granted), 0))
	}
	return next, next < maxWait
}

func (q *Queue) returnSlot(t *Ticket) {
	q.inUse--
	q.endProbe(t)
	delete(q.serving, t)
	if ts := q.tenants[t.tenant]; ts != nil {
		ts.inUse--
		ts.inUseCost -= t.cost
		if t.spare {
			ts.spareInUse--
			ts.spareCost -= t.cost
		}
		if ts.inUse == 0 {
			ts.inUseCost = 0 // no float residue
		}
		if ts.spareInUse == 0 {
			ts.spareCost = 0
		}
		q.forgetIdle(t.tenant, ts)
	}
}

func (q *Queue) refuse(w *waiter, rej *Rejection) {
	now := q.clock()
	rej.Waited = max(now.Sub(w.enqueued), 0)
	q.promise(rej, w.req, now, q.capacity())
	w.state = refused
	w.err = rej
	q.counters.rejected[rej.Reason]++
	close(w.ready)
}

func (q *Queue) deadlineRejection(w *waiter, now time.Time) *Rejection {
	return q.rejection(Deadline, w.req.Tenant, now.Sub(w.enqueued), 0)
}

// targetReviewRejection refuses a waiter at its class's delay target
// whose wait still ahead, re-estimated there, does not fit (with its
// margin) in the time left to its deadline. Its code is Deadline's (the
// deadline cannot be met), but the message says what decided it and
// when: the target's review, the estimate, the time left. "could not
// start before its deadline after waiting 500ms" had a client with a 2s
// deadline read that its deadline was 500ms.
func (q *Queue) targetReviewRejection(w *waiter, now time.Time, ahead, left time.Duration) *Rejection {
	rej := q.deadlineRejection(w, now)
	rej.Message = targetReviewMessage(q.cfg.Name, q.classes[w.req.Class].delay.target+w.req.Slack, ahead, left)
	return rej
}

// shedRejection refuses a waiter at its congested class's delay target.
// Its Retry-After is the time the work now queued at its class and above
// takes to drain (servedAhead): when a retry would find a queue no longer
// than this one.
func (q *Queue) shedRejection(w *waiter, now time.Time, capacity int) *Rejection {
	rej := q.rejection(Shed, w.req.Tenant, now.Sub(w.enqueued), 0)
	rej.RetryAfter = min(max(q.drain.waitFor(q.servedAhead(w.req.Class, capacity), capacity), q.cfg.MinRetryAfter), q.cfg.MaxRetryAfter)
	// The message states the estimate Retry-After follows: a shed
	// request's "waited 500ms" beside Retry-After: 55 read as arbitrary.
	rej.Message += fmt.Sprintf("; the work queued at its priority and above is estimated to drain in %s", waitText(rej.RetryAfter))
	return rej
}

// servedAhead is the work queued at class and above that a retry waits
// behind. Once completions are measured, all of it: arrivals the pool
// cannot start within the delay target are refused at arrival, so what is
// queued is what it serves, and in a steady overload the whole queue's
// drain is when a retry finds a queue no longer than this one. Before the
// first completion is measured the queue does not refuse arrivals on the
// prior's estimate (QueueUnmeasured), so a cold burst holds what arrived
// in a whole target (200 streams at 400 req/s), every one of them to be
// shed at the target: counting it all told those refusals 46-62 s while
// the pool served the next request seconds later. Then a class with a
// delay target counts only what the pool drains within it. (Capping the
// measured queue too, as branch earlyadvice did, tells a steady overload's
// shed refusals about the target whatever the queue behind them; that
// branch, with two other changes, lowered the Retry-After honesty test's
// retries served and was reverted.)
func (q *Queue) servedAhead(class Class, capacity int) float64 {
	rate := q.drain.perSlot() * float64(max(capacity, 0))
	var ahead float64
	for _, c := range q.classes[:class+1] {
		cost := c.cost
		if !q.drain.measured && c.delay.on() {
			cost = min(cost, c.delay.target.Seconds()*rate)
		}
		ahead += cost
	}
	return ahead
}

// waitLeft re-estimates how long a queued waiter still has to wait: the
// cost the schedule serves before it (higher classes within the starvation
// guard, its own flow's earlier waiters, other flows' waiters with lower
// finish tags) over the drain rate.
func (q *Queue) waitLeft(w *waiter, now time.Time, capacity int) time.Duration {
	cost, _ := q.ahead(w, now)
	return q.drain.waitFor(cost, capacity)
}

// rejection builds a refusal. Its Retry-After is, for the deadline
// refusals at arrival, the time until the estimated wait would fit in the
// time left (wait − left); for the others, wait itself; clamped to the
// configured range.
func (q *Queue) rejection(reason Reason, tenant string, wait, left time.Duration) *Rejection {
	retry := wait
	if reason == TenantOverShare || reason == Saturated {
		retry = wait - left
	}
	if reason == Deadline {
		retry = q.drain.waitFor(q.queuedCost, q.capacity())
	}
	retry = min(max(retry, q.cfg.MinRetryAfter), q.cfg.MaxRetryAfter)
	return &Rejection{Reason: reason, RetryAfter: retry,
		Message: rejectionMessage(reason, q.cfg.Name, tenant, wait, left)}
}
