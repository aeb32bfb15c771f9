package admission

import "time"

// Controlled delay is measured per class and per flow (one tenant within a
// class), as fq_codel does per flow (RFC 8290), and it spares clearly light
// tenants. With the class-wide discipline alone, one tenant's burst decided
// for everyone: the class's waits, long because of the heavy tenant's
// backlog or of the slots it holds, made the class congested, and then a
// light tenant's arrivals were refused beyond the target and its waiters
// shed, although the fair order serves them first; and the light tenant's
// quick grants ended the heavy tenant's congestion. Now:
//
//   - a waiter is subject to the discipline when its flow or its class is
//     congested: the flow's state keeps a heavy tenant congested while a
//     light one's quick grants reset the class's; the class's state still
//     catches overload spread over many short-lived flows (many tenants,
//     one request each), which no single flow lives long enough to show;
//   - a tenant whose work in the pool (queued and in service, by cost, this
//     request included) is at most half its weighted fair share is exempt:
//     bounded by its deadline only, as in a burst. What delays it is work
//     it has no part in, and refusing it would not make that work drain any
//     faster. Half, not the share itself: among many tenants of about
//     equal demand about half sit just under their share at any moment,
//     and exempting those would let the queue fill to the deadlines again.
//
// A flow's state lives while the flow has waiters, and while it is
// congested with the pool full (a congested tenant whose last waiter was
// just shed must not come back to a clean slate at once); a Kick that finds
// a slot free forgets the states of flows without waiters.

// flowDelay is the controlled-delay state of flow key, created on demand.
func (c *class) flowDelay(key string) *codel {
	d := c.delays[key]
	if d == nil {
		c.boundDelays()
		d = &codel{target: c.delay.target, interval: c.delay.interval}
		c.delays[key] = d
	}
	return d
}

// boundDelays keeps the per-flow states to at most maxFlowDelays: past it, the
// states of flows without waiters go first (they only remember congestion
// while the pool is full).
func (c *class) boundDelays() {
	if len(c.delays) < maxFlowDelays {
		return
	}
	for key := range c.delays {
		if c.flows[key] == nil {
			delete(c.delays, key)
		}
	}
}

// maxFlowDelays bounds the per-flow states of a class; flows with waiters
// are bounded by the queue's own bounds already.
const maxFlowDelays = 4096

// forgetIdleDelays drops the states of flows without waiters: all of them
// when a slot is free (they drained), else those not congested.
func (c *class) forgetIdleDelays(slotFree bool) {
	for key, d := range c.delays {
		if c.flows[key] == nil && (slotFree || !d.congested) {
			delete(c.delays, key)
		}
	}
}

// drained ends the class's and every flow's congestion: nobody waits and a
// slot is free.
func (c *class) drained() {
	c.delay.reset()
	clear(c.delays)
}

// congested reports whether the class or any of its flows is congested.
func (c *class) congested() bool {
	if c.delay.congested {
		return true
	}
	for _, d := range c.delays {
		if d.congested {
			return true
		}
	}
	return false
}

// observe feeds one sojourn of flow key to the class's and the flow's state.
func (c *class) observe(key string, now time.Time, sojourn time.Duration) {
	c.delay.observe(now, sojourn)
	c.flowDelay(key).observe(now, sojourn)
}

// observeFlows feeds the class and each waiting flow the age of its oldest
// waiter, and forgets the states that drained.
func (c *class) observeFlows(now time.Time, slotFree bool) {
	var oldestAll *waiter
	for _, f := range c.active {
		oldest := f.waiters[0]
		for _, w := range f.waiters[1:] { // an appointed waiter may be ahead of older ones
			if w.due().Before(oldest.due()) {
				oldest = w
			}
		}
		if counted, ok := oldest.counted(now, c.delay.target); ok {
			c.flowDelay(f.key).observe(now, counted)
		}
		if oldestAll == nil || oldest.due().Before(oldestAll.due()) {
			oldestAll = oldest
		}
	}
	switch {
	case oldestAll != nil:
		if counted, ok := oldestAll.counted(now, c.delay.target); ok {
			c.delay.observe(now, counted)
		}
	case slotFree:
		c.delay.reset()
	}
	c.forgetIdleDelays(slotFree)
}

// flowOrClass is the state that decides for flow key: the flow's when it
// is congested, else the class's.
func (c *class) flowOrClass(key string) *codel {
	if d := c.delays[key]; d != nil && d.congested {
		return d
	}
	return &c.delay
}

// arrivalBound is the longest wait an arrival of r is admitted for by the
// controlled delay: its class's target unless its tenant is light; else 0
// (only the deadline bounds it). key is r's flow, kept for the callers.
func (q *Queue) arrivalBound(r Request, key string) time.Duration {
	c := q.classes[r.Class]
	if !c.delay.on() || q.light(r.Tenant, r.Weight, r.Cost) {
		return 0
	}
	if c.flowOrClass(key).congested {
		return c.delay.target // streams miss their target: no slack (answerwait.go)
	}
	return c.delay.target + r.Slack
}

// startsSoon reports whether waiter w, at its target review, is about to
// start: the work the schedule serves before it drains within a tenth of
// the target (then one more slot must free, as for a waiter at the head).
// A light tenant's waiter is bounded by its deadline only.
func (q *Queue) startsSoon(w *waiter, now time.Time, capacity int) bool {
	if q.light(w.req.Tenant, w.req.Weight, 0) {
		return true
	}
	target := q.classes[w.req.Class].delay.target
	return q.waitLeft(w, now, capacity) <= q.drain.waitFor(0, capacity)+target/startSlack
}

// startSlack: a waiter kept at its target review must be expected to start
// within target/startSlack of it.
const startSlack = 10

// sheds reports whether waiter w is to be shed at now: its flow or class
// is congested, it has waited its target, and its tenant is not light.
// extra is w's cost when w has already left the queue's accounting
// (dispatch pops before it decides), else 0.
func (q *Queue) sheds(w *waiter, now time.Time, extra float64) bool {
	d := q.classes[w.req.Class].flowOrClass(q.flowKey(w.req))
	return d.over(w.enqueued, now) && !q.light(w.req.Tenant, w.req.Weight, extra)
}

// light reports whether tenant's work in the pool, queued and in service,
// plus extra, is at most half its weighted fair share of all the pool's
// work among the tenants that have some (see overPoolShare). A tenant
// alone in the pool holds all of its share: never light.
func (q *Queue) light(tenant string, weight, extra float64) bool {
	own, share := q.poolShare(tenant, weight, extra)
	return own <= share/2*(1+1e-9)
}
