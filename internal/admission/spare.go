package admission

import (
	"errors"
	"math"
	"time"
)

// Spare-capacity work (queued jobs, batch requests, hedges) runs only in
// slots that live traffic leaves free, and gives them back the moment live
// traffic needs them:
//
//   - a spare request is granted only when nothing waits and, while live
//     requests are in flight, more than the reserve (SpareReserve x
//     capacity) is free; it never waits (ErrNoSpare otherwise, not counted
//     as a refusal — nobody was turned away);
//   - a job (a spare request other than a hedge) is granted only below the
//     slots the engines run at once (QueueConfig.SpareCapacity: capacity
//     less the handover past their batch bounds) less the reserve sized
//     against those, and a live request granted past them preempts the
//     youngest job at once: the handover's requests wait in an engine's
//     own queue, and a live one sent there waited behind jobs that held
//     the engine's slots (docs/BENCHMARKS.md §7h, §7i);
//   - a live request that would have to wait preempts the youngest spare
//     ticket (the least work lost): its Preempt function is called, the
//     request behind it aborts, and the slot it releases goes to the waiter.
//
// Hedges keep the handover: a hedge races a live client's own request, and
// keeping them out of it skipped hedges for capacity 185 -> 490 in §7h's
// overload guard. So a queue that grants no job (no batch, no async queue)
// behaves exactly as before SpareCapacity: hedges take the same slots, the
// reserve is sized as before, and takeBackPastSlots finds no job to take.
//
// Batch queues take the job back and run it again later.

// ErrNoSpare says a spare request found no free slot to take.
var ErrNoSpare = errors.New("admission: no spare capacity")

// spareTicket is a granted spare request that live traffic may preempt.
type spareTicket struct {
	t       *Ticket
	preempt func()
	hedge   bool // Request.Hedge: not kept out of the handover
}

// takeSpare grants a spare request or refuses it; q.mu held.
func (q *Queue) takeSpare(r Request, now time.Time, capacity int) (*Ticket, error) {
	room := capacity - q.reserve(capacity) // a hedge: the whole capacity, as before SpareCapacity
	if !r.Hedge {
		room = q.jobRoom(capacity)
	}
	if q.queued > 0 || q.inUse >= room {
		return nil, ErrNoSpare
	}
	t := q.takeSlot(r.Tenant, r.Weight, r.Cost, now, 0)
	t.spare, t.unmeasured = true, r.Unmeasured
	ts := q.tenants[r.Tenant]
	ts.spareInUse++
	ts.spareCost += t.cost
	q.spares = append(q.spares, spareTicket{t: t, preempt: r.Preempt, hedge: r.Hedge})
	return t, nil
}

// slotCapacity is how many of capacity's slots the engines run at once
// (QueueConfig.SpareCapacity): the jobs' ceiling; q.mu held.
func (q *Queue) slotCapacity(capacity int) int {
	if q.cfg.SpareCapacity == nil {
		return capacity
	}
	return min(capacity, max(q.cfg.SpareCapacity(), 0))
}

// jobRoom is the in-use count below which a job is granted: the engines'
// slots less the reserve sized against them; q.mu held.
func (q *Queue) jobRoom(capacity int) int {
	slots := q.slotCapacity(capacity)
	return slots - q.reserve(slots)
}

// takeBackPastSlots preempts the youngest job when a live request was just
// granted past the slots the engines run at once (slotCapacity): its slot
// is one of the handover's, and it would wait in an engine's own queue
// behind jobs holding the engine's slots. Hedges are not taken back here.
// With no job in flight it does nothing (not even ask the pool for its
// slots), so live traffic without jobs is as before; q.mu held.
func (q *Queue) takeBackPastSlots(now time.Time, capacity int) {
	if q.cfg.SpareCapacity == nil || !q.jobsInFlight() {
		return
	}
	// A job taken back before and still stopping gives its slot to this
	// request: counted, each live request in a row while it aborted took
	// one more job.
	if q.inUse-q.stopping > q.slotCapacity(capacity) {
		if t := q.preemptYoungestJob(now); t != nil {
			t.takenBack = true
			q.stopping++
		}
	}
}

// jobsInFlight says whether a spare ticket other than a hedge is out; q.mu
// held.
func (q *Queue) jobsInFlight() bool {
	for _, s := range q.spares {
		if !s.hedge && !s.t.released.Load() {
			return true
		}
	}
	return false
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
	return q.preemptYoungestOf(now, true) != nil
}

// preemptYoungestJob is preemptYoungest passing over hedges: the ticket
// taken back, nil when no job runs; q.mu held.
func (q *Queue) preemptYoungestJob(now time.Time) *Ticket {
	return q.preemptYoungestOf(now, false)
}

func (q *Queue) preemptYoungestOf(now time.Time, hedges bool) *Ticket {
	for i := len(q.spares) - 1; i >= 0; i-- {
		s := q.spares[i]
		if s.hedge && !hedges {
			continue
		}
		q.spares = append(q.spares[:i], q.spares[i+1:]...)
		if s.t.released.Load() {
			continue
		}
		q.counters.preempted++
		q.counters.preemptedHeld += max(now.Sub(s.t.granted), 0).Seconds()
		if s.preempt != nil {
			s.preempt()
		}
		return s.t
	}
	return nil
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
