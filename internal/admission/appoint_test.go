package admission

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// One slot held, a queue of another tenant's work ahead: every request with
// a 1s deadline is refused (prior: 100 units per slot-second).
func appointmentQueue(t *testing.T) (*Queue, *fakeClock, *Ticket) {
	t.Helper()
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "busy", Cost: 100})
	for range 5 {
		submitT(t, q, Request{Tenant: "busy", Cost: 100})
	}
	return q, clk, held
}

func refuse(t *testing.T, q *Queue, r Request) *Rejection {
	t.Helper()
	_, _, err := q.submit(r)
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("submit(%+v) = %v; want a refusal", r, err)
	}
	return rej
}

// Refusals are booked in order: each one's Retry-After is its place in its
// tenant's book, after the tenant's requests refused before it, spaced by
// the time its cost takes to drain at the tenant's share of the drain rate,
// while refused clients are known to come back (every appointment so far
// kept); the message names the later time.
func TestAppointmentsAreBookedInOrder(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	q.appts.outcome(true)
	var prev time.Duration
	for i := range 5 {
		rej := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: uint64(i + 1)})
		// 100 units at half of 100 units/s (two tenants with work: c, busy)
		if i > 0 && rej.RetryAfter-prev != 2*time.Second {
			t.Fatalf("refusal %d: Retry-After %v after %v; want 2s later", i, rej.RetryAfter, prev)
		}
		if i > 0 && !strings.Contains(rej.Message, "booked to come back first: retry after "+waitText(rej.RetryAfter)) {
			t.Fatalf("refusal %d: message %q does not state its Retry-After %v", i, rej.Message, rej.RetryAfter)
		}
		prev = rej.RetryAfter
	}
}

// Refused clients that do not come back are no backlog: after a burst of
// them (every appointment missed), a fresh refusal's Retry-After is its own
// estimate, not a place behind the no-shows. The old book spaced each
// refusal by its drain time whoever came back: the 60th was a minute out.
func TestNoShowsDoNotPushTheBookOut(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	first := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: 1})
	for fp := uint64(2); fp <= 60; fp++ {
		refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: fp})
	}
	clk.Advance(first.RetryAfter + appointmentGrace + time.Millisecond) // the first is a no-show
	q.mu.Lock()
	q.pruneAppointments(clk.Now())
	q.mu.Unlock()
	fresh := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: 1000})
	if fresh.RetryAfter > 10*time.Second || strings.Contains(fresh.Message, "booked") {
		t.Fatalf("fresh refusal after no-shows: Retry-After %v (%s); want its own estimate, a few seconds", fresh.RetryAfter, fresh.Message)
	}
}

// A request that comes back at its appointment is served ahead of the
// demand its tenant sent while it waited as told (in a flow of its own,
// with half its tenant's weight), not ahead of other tenants' fair share.
func TestAppointmentKeptIsServedFirst(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	rej := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: 42})
	clk.Advance(rej.RetryAfter)
	var newer []*waiter
	for range 4 {
		newer = append(newer, submitT(t, q, Request{Tenant: "c", Cost: 100}))
	}
	back := submitT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 42})
	if back.flow.waiters[0] != back {
		t.Fatal("an appointment kept goes to the front of its tenant's flow")
	}
	if !(back.finish < newer[0].finish) {
		t.Fatalf("appointment tag %.0f, tenant's newer requests %.0f..%.0f: it must go first",
			back.finish, newer[0].finish, newer[3].finish)
	}
	// The tenant's place among tenants is unchanged: its last tag moved by
	// exactly the appointment's share.
	if got := newer[3].finish; got != 500 {
		t.Fatalf("last tag %.0f, want 400 + 100", got)
	}
}

// Early or late, a request is an ordinary arrival; an early one keeps its
// appointment for later, a late one has lost it.
func TestAppointmentEarlyOrLate(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	rej := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: 7})
	early := submitT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 7})
	if early.flow.waiters[0] == early && len(early.flow.waiters) > 1 {
		t.Fatal("an early request was treated as keeping its appointment")
	}
	clk.Advance(rej.RetryAfter + time.Minute)
	late := submitT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 7})
	if late.flow.waiters[0] == late {
		t.Fatal("a request a minute late was treated as keeping its appointment")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.appts.at[7]; ok {
		t.Fatal("a missed appointment is still booked")
	}
}

// The book is bounded: past maxAppointments, refusals still get the book's
// Retry-After but are not recorded.
func TestAppointmentsBounded(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	q.mu.Lock()
	for i := range maxAppointments {
		q.book(Request{Tenant: "x", Cost: 1, Fingerprint: uint64(i + 1)}, clk.Now(), 0, 1)
	}
	q.mu.Unlock()
	rej := refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: 1 << 40})
	if rej.RetryAfter <= 0 {
		t.Fatal(rej.RetryAfter)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.appts.at) > maxAppointments || len(q.appts.end) > maxAppointments {
		t.Fatalf("%d appointments, %d tenant books", len(q.appts.at), len(q.appts.end))
	}
}

// Requests keeping their appointments are served among themselves in the
// order they came back, all ahead of their tenant's other waiters.
func TestAppointmentsKeptFirstComeFirstServed(t *testing.T) {
	q, clk, _ := appointmentQueue(t)
	var advice time.Duration
	for fp := uint64(1); fp <= 2; fp++ {
		advice = refuse(t, q, Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Second), Fingerprint: fp}).RetryAfter
	}
	clk.Advance(advice)
	fresh := submitT(t, q, Request{Tenant: "c", Cost: 100})
	first := submitT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 1})
	second := submitT(t, q, Request{Tenant: "c", Cost: 100, Fingerprint: 2})
	got := first.flow.waiters
	if len(got) != 3 || got[0] != first || got[1] != second || got[2] != fresh {
		t.Fatal("want the appointments in arrival order, then the fresh request")
	}
	if !(first.finish < second.finish && second.finish < fresh.finish) {
		t.Fatalf("tags %.0f %.0f %.0f must increase along the flow", first.finish, second.finish, fresh.finish)
	}
}
