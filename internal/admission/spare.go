package admission

import (
	"errors"
	"math"
	"time"
)

// Spare-capacity work (queued jobs, batch requests) runs only in slots that
// live traffic leaves free, and gives them back the moment live traffic
// needs them:
//
//   - a spare request is granted only when nothing waits and, while live
//     requests are in flight, more than the reserve (SpareReserve x
//     capacity) is free; it never waits (ErrNoSpare otherwise, not counted
//     as a refusal — nobody was turned away);
//   - a live request that would have to wait preempts the youngest spare
//     ticket (the least work lost): its Preempt function is called, the
//     request behind it aborts, and the slot it releases goes to the waiter.
//
// Batch queues take the job back and run it again later.

// ErrNoSpare says a spare request found no free slot to take.
var ErrNoSpare = errors.New("admission: no spare capacity")

// spareTicket is a granted spare request that live traffic may preempt.
type spareTicket struct {
	t       *Ticket
	preempt func()
}

// takeSpare grants a spare request or refuses it; q.mu held.
func (q *Queue) takeSpare(r Request, now time.Time, capacity int) (*Ticket, error) {
	if q.queued > 0 || q.inUse >= capacity-q.reserve(capacity) {
		return nil, ErrNoSpare
	}
	t := q.takeSlot(r.Tenant, r.Weight, r.Cost, now, 0)
	t.spare, t.unmeasured = true, r.Unmeasured
	ts := q.tenants[r.Tenant]
	ts.spareInUse++
	ts.spareCost += t.cost
	q.spares = append(q.spares, spareTicket{t: t, preempt: r.Preempt})
	return t, nil
}

// reserve is how many slots spare work leaves free now; q.mu held.
func (q *Queue) reserve(capacity int) int {
	if q.cfg.SpareReserve <= 0 || q.inUse == len(q.spares) { // no live request in flight
		return 0
	}
	return int(math.Ceil(q.cfg.SpareReserve * float64(capacity)))
}

// preemptYoungest calls Preempt on the most recently granted spare ticket
// still running and reports whether there was one; q.mu held. The slot is
// freed when that request releases its ticket. The time the ticket had
// held its slot is counted as lost: the job's partial work is thrown away.
func (q *Queue) preemptYoungest(now time.Time) bool {
	for i := len(q.spares) - 1; i >= 0; i-- {
		s := q.spares[i]
		q.spares = append(q.spares[:i], q.spares[i+1:]...)
		if s.t.released.Load() {
			continue
		}
		q.counters.preempted++
		q.counters.preemptedHeld += max(now.Sub(s.t.granted), 0).Seconds()
		if s.preempt != nil {
			s.preempt()
		}
		return true
	}
	return false
}

// forgetSpare drops a released spare ticket from the list; q.mu held.
func (q *Queue) forgetSpare(t *Ticket) {
	for i, s := range q.spares {
		if s.t == t {
			q.spares = append(q.spares[:i], q.spares[i+1:]...)
			return
		}
	}
}

// Preempted is how many spare tickets live traffic has taken back.
func (q *Queue) Preempted() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counters.preempted
}

// PreemptedHeld is the slot-time, in seconds, the preempted spare tickets
// had held their slots when taken back: the work preemption threw away.
// Divided by Preempted it says whether the youngest ticket, the one taken,
// was young (little lost) or had run most of its service.
func (q *Queue) PreemptedHeld() float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counters.preemptedHeld
}

func (q *Queue) takeSpareOrRefuse(r Request, now time.Time, capacity int) (*Ticket, *waiter, error) {
	t, err := q.takeSpare(r, now, capacity)
	return t, nil, err
}
