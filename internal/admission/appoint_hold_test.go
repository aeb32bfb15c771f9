package admission

import (
	"testing"
	"time"
)

// refuseAndReturn books an appointment for tenant c's request fp on a
// one-slot queue whose slot busy holds, then moves the clock to it and
// frees the slot: the appointment is due and its slot free.
func refuseAndReturn(t *testing.T, q *Queue, clk *fakeClock, fp uint64) {
	t.Helper()
	held := grantedT(t, q, Request{Tenant: "busy", Cost: 100})
	rej := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Millisecond), Fingerprint: fp})
	clk.Advance(rej.RetryAfter)
	held.Release()
}

// While an appointment is due and its client has been seen to come back,
// the free slot is held for it: a fresh arrival waits instead of taking
// it, the client keeping the appointment is granted at once, and the fresh
// arrival is granted when that slot frees. (Before, the fresh arrival took
// the slot and the client that came back as told was refused again.)
func TestDueAppointmentHoldsItsSlot(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	refuseAndReturn(t, q, clk, 1)
	grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 1}).Release() // kept: clients come back

	refuseAndReturn(t, q, clk, 2)
	tk, fresh, err := q.submit(Request{Tenant: "d", Cost: 100})
	if err != nil || tk != nil || fresh == nil {
		t.Fatalf("fresh arrival while an appointment is due: ticket %v, waiter %v, err %v; want it queued", tk, fresh, err)
	}
	back := grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 2})
	if fresh.state != waiting {
		t.Fatal("the fresh arrival was granted the slot held for the appointment")
	}
	back.Release()
	if fresh.state != granted {
		t.Fatal("the fresh arrival is granted once the appointment's slot frees")
	}
	fresh.ticket.Release()
}

// A fresh arrival with a deadline is refused with its own appointment when
// the free slots are all held, with a Retry-After past the held work.
func TestDueAppointmentRefusesFreshWithLaterAdvice(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	refuseAndReturn(t, q, clk, 1)
	grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 1}).Release()
	refuseAndReturn(t, q, clk, 2)
	rej := refuse(t, q, Request{Tenant: "d", Cost: 100, Deadline: clk.Now().Add(time.Millisecond), Fingerprint: 3})
	if rej.RetryAfter <= 0 || rej.RetryAfter >= q.cfg.MaxRetryAfter {
		t.Fatalf("Retry-After %v; want the book's, not the clamp", rej.RetryAfter)
	}
	grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 2}).Release()
}

// Clients that do not come back hold nothing: once the book's appointments
// have passed unkept, a fresh arrival takes a free slot even while another
// appointment is due.
func TestNoShowAppointmentsHoldNoSlot(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	q.mu.Lock()
	for fp := uint64(1); fp <= 3; fp++ {
		q.book(Request{Tenant: "c", Cost: 1, Fingerprint: fp}, clk.Now(), 0, 1)
	}
	q.mu.Unlock()
	clk.Advance(time.Minute) // all three missed
	q.Kick()
	q.mu.Lock()
	q.book(Request{Tenant: "c", Cost: 1, Fingerprint: 4}, clk.Now(), 0, 1) // due now
	q.mu.Unlock()
	if tk, _, err := q.submit(Request{Tenant: "d", Cost: 100}); tk == nil || err != nil {
		t.Fatalf("fresh arrival after no-shows: %v, %v; want the free slot", tk, err)
	}
}

// The held slot shows in Stats and as sluice_queue_held_slots while the
// appointment is due, and is gone once its client takes it.
func TestHeldSlotsGauge(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	held := func() float64 {
		return gather(t, NewCollector(func() map[string]*Queue { return map[string]*Queue{"m": q} }))["sluice_queue_held_slots"]["model=m,"]
	}
	if got := held(); got != 0 {
		t.Fatalf("held %v before any appointment, want 0", got)
	}
	refuseAndReturn(t, q, clk, 1)
	grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 1}).Release() // kept: clients come back
	refuseAndReturn(t, q, clk, 2)
	if s := q.Stats(); s.HeldSlots != 1 || held() != 1 {
		t.Fatalf("appointment due: Stats.HeldSlots %d, gauge %v; want 1", s.HeldSlots, held())
	}
	back := grantedT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 2})
	if got := held(); got != 0 {
		t.Fatalf("held %v after the client took its slot, want 0", got)
	}
	back.Release()
}
