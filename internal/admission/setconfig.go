package admission

// SetConfig changes a running queue's settings in place, keeping its
// waiters (in their order), its tickets out, its drain measurement and its
// tenants' state: a config reload hands the queue over rather than
// building a new one beside it. A new queue did not know the old one's
// waiters or tickets, so it granted later arrivals at once, ahead of them,
// and its bounds counted none of them (RELIABILITY, "Admission settings
// applied to the running queue").
//
// The bounds (MaxQueued, MaxQueuedPerTenant, MaxQueuedCost,
// MaxQueuedCostPerTenant) apply to the next arrival: a lowered bound
// evicts no waiter, it refuses arrivals until the queue is back under it
// (admit). Delay targets apply at the waiters' next review (a Kick or
// their own timer); a class whose target changes keeps its congestion
// state. ShortFirst applies to arrivals. RampWindow 0 ends every ramp and
// puts the held waiters back in the schedule. Name, Fair, Wake,
// KnownCapacity, SpareCapacity, ReportedCapacity, PrefillCapacity, PriorSlotRate and DrainSamples are the queue's identity
// and its measurement: they keep the values NewQueue got. It grants at once what
// the new settings let through.
func (q *Queue) SetConfig(cfg QueueConfig) {
	cfg = cfg.withDefaults()
	q.mu.Lock()
	defer q.mu.Unlock()
	cfg.Name, cfg.Fair, cfg.Wake, cfg.KnownCapacity = q.cfg.Name, q.cfg.Fair, q.cfg.Wake, q.cfg.KnownCapacity
	cfg.ReportedCapacity, cfg.PrefillCapacity, cfg.SpareCapacity = q.cfg.ReportedCapacity, q.cfg.PrefillCapacity, q.cfg.SpareCapacity
	cfg.PriorSlotRate, cfg.DrainSamples = q.cfg.PriorSlotRate, q.cfg.DrainSamples
	for i, c := range q.classes {
		if c.delay.target == cfg.Targets[i] {
			continue
		}
		c.delay.target, c.delay.interval = cfg.Targets[i], 2*cfg.Targets[i]
		for _, d := range c.delays {
			d.target, d.interval = c.delay.target, c.delay.interval
		}
		if !c.delay.on() {
			c.delay.reset()
			clear(c.delays)
		}
	}
	q.cfg = cfg
	if !q.rampOn() {
		clear(q.ramps) // no tenant held: unparkFreed releases the parked
		q.sums = rampSums{visits: q.sums.visits}
	}
	q.dispatch(q.clock(), q.capacity())
}
