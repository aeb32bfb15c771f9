package admission

// A Kick does timed work only while something is left for it: waiters to
// grant when capacity grows without a Release, or to refuse at their
// deadline and shed at their delay target; controlled-delay state to end
// once the queue has drained with a slot free; the ramp activity of
// tenants to forget after RampWindow of quiet. Once none is left, a Kick
// changes nothing, and nothing becomes due until the next Acquire (a
// Release grants only waiters, and with none it touches no state a Kick
// reads). So whoever runs Kick may stop while every queue rests and start
// again when one is sent work: an idle gateway then does no work at all.

// Rest reports whether a Kick now would change nothing, and would keep
// changing nothing until the next Acquire. When it does, that Acquire
// sends on QueueConfig.Wake (never blocking).
func (q *Queue) Rest() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued > 0 || len(q.parked) > 0 || len(q.ramps) > 0 {
		return false
	}
	for _, c := range q.classes {
		if len(c.delays) > 0 || !c.delay.firstAbove.IsZero() || c.delay.congested {
			return false
		}
	}
	q.resting = true
	return true
}

// wakeFromRest tells the Kick runner that work arrived at a resting
// queue. Runs under q.mu.
func (q *Queue) wakeFromRest() {
	if !q.resting {
		return
	}
	q.resting = false
	if q.cfg.Wake != nil {
		select {
		case q.cfg.Wake <- struct{}{}:
		default: // a wake is pending already
		}
	}
}
