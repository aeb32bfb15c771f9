package admission

// A tenant within its share that sends one long prompt was ordered by that
// prompt's whole cost: prompt plus max_tokens, several times a typical
// request's. Its finish tag then lay behind about its own cost from every
// backlogged flow, and the wait estimated from it ran just past the delay
// target, so the prompt was refused at arrival (tenant_over_share), or shed
// at the target, while its tenant asked for no more than its share (the mix
// scenario's t3 at 4x: docs/RELIABILITY.md, branch mixburst).
//
// Such a request is now ordered as a request of the class's mean queued
// cost when it is its flow's only waiter and its tenant's work in the pool,
// it left out, is within the tenant's share: its finish tag is its start
// plus that mean over its weight. Its flow is still charged the whole cost
// (the flow's last finish tag is the undiscounted one), so a second request
// of the tenant queued behind it pays for it; a tenant that is backlogged,
// or over its share, gets no discount. What the discount forgives is the
// order of one request of a tenant with nothing else queued: the flow is
// forgotten once it empties, as it was before.

// loneOrder tags w, about to be queued as the only waiter of flow key in
// class c (start and finish already set by tags), and returns the finish
// tag its flow is to be charged: w.finish unchanged, or, for a long
// request of a tenant within its share, w.finish shortened to the class's
// mean queued cost and the undiscounted tag returned. Runs under q.mu.
func (q *Queue) loneOrder(c *class, key string, w *waiter, weight float64) (charged float64) {
	charged = w.finish
	if !q.cfg.Fair || c.n == 0 || c.flows[key] != nil {
		return charged
	}
	mean := c.cost / float64(c.n)
	if w.cost <= mean || q.overPoolShare(w.req.Tenant, w.req.Weight, 0) {
		return charged
	}
	w.finish = w.start + mean/weight
	return charged
}

// chargeFlow sets the last finish tag of w's flow to charged after w was
// pushed as its only waiter (loneOrder).
func chargeFlow(w *waiter, charged float64) {
	if f := w.flow; f != nil && len(f.waiters) > 0 && f.waiters[len(f.waiters)-1] == w {
		f.lastFinish = max(f.lastFinish, charged)
	}
}
