package admission

import "time"

// Controlled delay runs per flow (one tenant within a class), as fq_codel
// does (RFC 8290) and as Facebook's adaptive queue timeout does per queue,
// and it acts only on tenants at or over their fair share. The class-wide
// discipline it replaces let one tenant's burst decide for everyone: the
// class's waits, long because of the heavy tenant's backlog or of the
// slots it holds, made the class congested, and then a light tenant's
// arrivals were refused beyond the target and its waiters shed, although
// the fair order serves them first and they are well within their share.
// Measured by flow, a tenant the fair order serves promptly is never
// congested by another's backlog, and its quick grants no longer end the
// heavy tenant's congestion. Gated by share, a tenant under its weighted
// fair share of the pool's work (queued and in service, by cost) is bounded
// by its deadline only, as in a burst: what delays it is work it has no
// part in, and refusing it would not make that work drain any faster. So
// the flows over their share are refused and shed first, and those at it
// (a tenant alone in the pool among them) keep the discipline whole.
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

// drained ends every flow's congestion: nobody waits and a slot is free.
func (c *class) drained() { clear(c.delays) }

// congested reports whether any flow of the class is congested.
func (c *class) congested() bool {
	for _, d := range c.delays {
		if d.congested {
			return true
		}
	}
	return false
}

// observeFlows feeds each waiting flow the age of its oldest waiter, and
// forgets the states of flows that drained.
func (c *class) observeFlows(now time.Time, slotFree bool) {
	for _, f := range c.active {
		oldest := f.waiters[0]
		for _, w := range f.waiters[1:] { // an appointed waiter may be ahead of older ones
			if w.enqueued.Before(oldest.enqueued) {
				oldest = w
			}
		}
		c.flowDelay(f.key).observe(now, now.Sub(oldest.enqueued))
	}
	c.forgetIdleDelays(slotFree)
}

// arrivalBound is the longest wait an arrival of tenant r.Tenant (flow key)
// is admitted for by the controlled delay: its flow's target while the flow
// is congested and the tenant, this request counted, is at or over its
// fair share of the pool's work; else 0 (only the deadline bounds it).
func (q *Queue) arrivalBound(r Request, key string) time.Duration {
	d := q.classes[r.Class].delays[key]
	if d == nil || d.bound() == 0 || !q.atOrOverPoolShare(r.Tenant, r.Weight, r.Cost) {
		return 0
	}
	return d.bound()
}

// sheds reports whether waiter w is to be shed at now: its flow is
// congested, it has waited its target, and its tenant is at or over its
// fair share of the pool's work. extra is w's cost when w has already left
// the queue's accounting (dispatch pops before it decides), else 0.
func (q *Queue) sheds(w *waiter, now time.Time, extra float64) bool {
	d := q.classes[w.req.Class].delays[q.flowKey(w.req)]
	return d != nil && d.over(w.enqueued, now) && q.atOrOverPoolShare(w.req.Tenant, w.req.Weight, extra)
}

// atOrOverPoolShare is overPoolShare with equality counted as over: a
// tenant alone in the pool, or one of several with equal work, is at its
// share and keeps the whole discipline.
func (q *Queue) atOrOverPoolShare(tenant string, weight, extra float64) bool {
	own, total, weights := extra, extra+q.queuedCost, weight
	for name, ts := range q.tenants {
		total += ts.inUseCost
		if name == tenant {
			own += ts.cost + ts.inUseCost
		} else {
			weights += ts.weight
		}
	}
	return own >= total*weight/weights*(1-1e-9)
}
