package admission

// Open takes the queue out of its pool's way for good: every waiter is
// granted at once, whatever the capacity, and so is every request that
// asks afterwards (spare requests excepted: they still take only spare
// capacity). It is for a queue whose pool no longer has admission (a
// reload turned admission.enabled off): the requests arriving there skip
// the queue, and the ones it held go on as they do, at once. Before, they
// were granted only as the tickets out came back, which nothing hurried:
// behind a 6 s request on a one-slot backend, two waiters queued when the
// reload came 1.4 s in were let through at 6 s. Their tickets count until
// they are returned, as every ticket does; a queue opened is never closed
// again (a reload turning admission back on makes a new one).
func (q *Queue) Open() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.opened = true
	now := q.clock()
	clear(q.ramps) // no tenant held: every parked waiter back in the schedule
	q.sums = rampSums{visits: q.sums.visits}
	q.unparkFreed(now, 0)
	for q.scheduled() > 0 {
		w := q.next(now, 0) // every one is granted: the order is moot
		waited := now.Sub(w.enqueued)
		w.ticket = q.grant(w.req, w.cost, now, waited, 0)
		w.state = granted
		q.counters.waited(w.req.Class, waited)
		close(w.ready)
	}
}
