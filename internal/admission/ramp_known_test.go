package admission

import (
	"testing"
	"time"
)

// knownQueue is rampQueue on a pool whose capacity slots are all known
// (static limits: QueueConfig.KnownCapacity), ramp window 2s.
func knownQueue(capacity int) (*Queue, *fakeClock) {
	clk := newFakeClock()
	c := newCapacity(capacity)
	return NewQueue(QueueConfig{Fair: true, RampWindow: 2 * time.Second, KnownCapacity: c.get}, c.get, clk.Now), clk
}

// The case seen in production: on 8 static slots tenant A runs one long
// answer, tenant B becomes busy beside it, and B's first request holds its
// slot for a long answer too. B's next requests must not wait while six
// slots stand free that nobody active used: reckoned from the pool's peak
// (2) they were held until B's first answer came back, a minute later.
func TestRampFreeKnownSlotsGoToNewTenant(t *testing.T) {
	q, clk := knownQueue(8)
	grantedT(t, q, Request{Tenant: "A", Cost: 100})
	clk.Advance(100 * time.Millisecond)
	grantedT(t, q, Request{Tenant: "B", Cost: 100}) // answers for a minute
	clk.Advance(100 * time.Millisecond)
	var held []*waiter
	for range 5 {
		tk, w, err := q.submit(Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(2 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if tk == nil {
			held = append(held, w)
		}
	}
	// A minute on, B's first answer still running, the queue kicked as the
	// gateway does: nothing was or became free to B on the old rule.
	for range 60 {
		clk.Advance(time.Second)
		q.Kick()
	}
	if n := len(held) - grantedCount(held); n > 0 {
		t.Fatalf("%d of B's requests held a minute with %d of 8 slots in use; want every one granted at once", n, q.Stats().InUse)
	}
	if s := q.Stats(); s.InUse != 7 || s.RampHeld != 0 {
		t.Fatalf("in use %d, held %d; want 7 (A 1, B 6), 0", s.InUse, s.RampHeld)
	}
}

// With the known slots as the base the protection stays: a newcomer's
// burst gets the slots nobody active used, not those a steady tenant frees
// between its requests (its recent peak).
func TestRampKnownSlotsKeepActiveTenantsPeak(t *testing.T) {
	q, clk := knownQueue(24)
	steady := steadyHolding(t, q, clk, 12)
	got, waiting := burst(q, 28, time.Time{})
	if len(got) != 12 || len(waiting) != 16 {
		t.Fatalf("burst: %d granted, %d waiting; want the 12 slots nobody used and 16 waiting", len(got), len(waiting))
	}
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	if n := grantedCount(waiting); n != 0 {
		t.Fatalf("%d burst requests took the steady tenant's freed slot", n)
	}
	clk.Advance(20 * time.Millisecond)
	steady[0] = grantedT(t, q, Request{Tenant: "steady", Cost: 100})
	if s := q.Stats(); s.InUse != 24 || s.Tenants["steady"].InUse != 12 {
		t.Fatalf("in use %d, steady %d; want 24, 12", s.InUse, s.Tenants["steady"].InUse)
	}
}

// Only the known part counts: with known slots below the capacity (a pool
// with adaptive backends beside static ones) the base is the known slots
// or the recent peak, not the capacity.
func TestRampBaseIsKnownPartOfCapacity(t *testing.T) {
	clk := newFakeClock()
	c := newCapacity(54)
	known := newCapacity(16)
	q := NewQueue(QueueConfig{Fair: true, RampWindow: 2 * time.Second, KnownCapacity: known.get}, c.get, clk.Now)
	steadyHolding(t, q, clk, 12)
	got, _ := burst(q, 28, time.Time{})
	// Base 16: allowance half of 8 (two tenants) = 4, which is also the
	// 16 - 12 slots nobody active used.
	if len(got) != 4 {
		t.Fatalf("burst granted %d with 16 of 54 slots known; want 4", len(got))
	}
}

// A config reload hands the running queue a config built afresh, without
// the pool's known slots: the queue keeps the ones it was made with.
func TestSetConfigKeepsKnownCapacity(t *testing.T) {
	q, clk := knownQueue(8)
	q.SetConfig(QueueConfig{Fair: true, RampWindow: 2 * time.Second})
	grantedT(t, q, Request{Tenant: "A", Cost: 100})
	clk.Advance(100 * time.Millisecond)
	for range 6 {
		grantedT(t, q, Request{Tenant: "B", Cost: 100})
	}
}
