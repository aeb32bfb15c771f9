package admission

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// rampQueue is a fair queue of capacity slots with the ramp on (window 2s)
// or off (window 0), on a fake clock.
func rampQueue(capacity int, window time.Duration) (*Queue, *fakeClock) {
	clk := newFakeClock()
	return NewQueue(QueueConfig{Fair: true, RampWindow: window}, newCapacity(capacity).get, clk.Now), clk
}

// steadyHolding has tenant "steady" alone take n slots, then give one back
// and take it again every 50 ms for a second, as a client streaming at a
// steady rate does: its peak is n and it is established (never ramps).
func steadyHolding(t *testing.T, q *Queue, clk *fakeClock, n int) []*Ticket {
	t.Helper()
	held := make([]*Ticket, n)
	for i := range held {
		held[i] = grantedT(t, q, Request{Tenant: "steady", Cost: 100})
	}
	for i := range 20 {
		clk.Advance(50 * time.Millisecond)
		held[i%n].Release()
		held[i%n] = grantedT(t, q, Request{Tenant: "steady", Cost: 100})
	}
	return held
}

// burst submits n requests of tenant "burst" and returns those granted at
// once and the waiters.
func burst(q *Queue, n int, deadline time.Time) (granted []*Ticket, waiting []*waiter) {
	for range n {
		tk, w, err := q.submit(Request{Tenant: "burst", Cost: 300, Deadline: deadline})
		switch {
		case err != nil:
			panic(err)
		case tk != nil:
			granted = append(granted, tk)
		default:
			waiting = append(waiting, w)
		}
	}
	return granted, waiting
}

func grantedCount(ws []*waiter) int {
	n := 0
	for _, w := range ws {
		if w.state == granted {
			n++
		}
	}
	return n
}

// A newly busy tenant does not take the slots an active tenant frees
// between its requests: the steady tenant's slot goes back to it. The
// burst's allowance is half its fair share of the ramp's base (the pool's
// recent peak, 12: 3 slots), plus one per completion of its own.
func TestRampKeepsActiveTenantsSlots(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)

	got, waiting := burst(q, 28, time.Time{})
	if len(got) != 3 || len(waiting) != 25 {
		t.Fatalf("burst: %d granted, %d waiting; want its allowance of 3 and 25 waiting", len(got), len(waiting))
	}
	if s := q.Stats(); s.RampHeld != 25 || s.Ramping != 1 || s.RampHeldTotal != 25 {
		t.Fatalf("stats: held %d (total %d), ramping %d; want 25 (25), 1", s.RampHeld, s.RampHeldTotal, s.Ramping)
	}
	// The steady tenant's slot frees and nobody of it waits at that
	// instant: the burst does not get it.
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	if n := grantedCount(waiting); n != 0 {
		t.Fatalf("%d burst requests took the steady tenant's freed slot", n)
	}
	clk.Advance(20 * time.Millisecond)
	steady[0] = grantedT(t, q, Request{Tenant: "steady", Cost: 100})

	// One of the burst's own completes: its slot back, one more for the
	// completion and one as the pool's peak (the base: 15, then 16) rose
	// with the burst's own grants.
	clk.Advance(10 * time.Millisecond)
	got[0].Ended(outcome.Success)
	got[0].Release()
	if n := grantedCount(waiting); n != 3 {
		t.Fatalf("%d burst requests granted after one of its own completed; want 3", n)
	}
	if s := q.Stats(); s.InUse != 17 || s.Tenants["steady"].InUse != 12 {
		t.Fatalf("in use %d, steady %d; want 17, 12", s.InUse, s.Tenants["steady"].InUse)
	}
}

// The capacity (a sum of adaptive limits) may stand far above the slots
// the backends have: the burst is reckoned from the pool's recent peak,
// not from the capacity.
func TestRampBaseBoundsOverstatedCapacity(t *testing.T) {
	q, clk := rampQueue(54, 2*time.Second)
	steadyHolding(t, q, clk, 12)
	got, _ := burst(q, 28, time.Time{})
	// Base: the peak 12, not 54; allowance 3 and no free slot within it.
	if len(got) != 3 {
		t.Fatalf("burst granted %d of an overstated capacity of 54; want its allowance of 3", len(got))
	}
}

// Negative control: without the ramp the burst takes the steady tenant's
// freed slot, which is what the test above guards against.
func TestWithoutRampBurstTakesFreedSlot(t *testing.T) {
	q, clk := rampQueue(24, 0)
	steady := steadyHolding(t, q, clk, 12)
	_, waiting := burst(q, 28, time.Time{})
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	if n := grantedCount(waiting); n != 1 {
		t.Fatalf("without the ramp %d burst requests took the freed slot; want 1", n)
	}
}

// A ramping tenant holds half its fair share before its peers' peaks count:
// next to a tenant using the whole pool, it still gets that much.
func TestRampAllowanceIsHalfFairShare(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	hog := steadyHolding(t, q, clk, 24)
	_, waiting := burst(q, 10, time.Time{})
	for i := range 10 {
		clk.Advance(10 * time.Millisecond)
		hog[i].Release()
	}
	// Half of 12 (24 slots, two active tenants): 6 of the hog's 10 freed
	// slots; the other 4 were the hog's recent peak.
	if n := grantedCount(waiting); n != 6 {
		t.Fatalf("ramping tenant granted %d next to a full pool; want its allowance 6", n)
	}
	if got := q.Stats().InUse; got != 20 {
		t.Fatalf("in use %d; want 20 (4 slots kept for the hog's peak)", got)
	}
}

// A tenant alone in the pool is never held, and the ramp ends once the
// others have been quiet for the window.
func TestRampEndsWhenAlone(t *testing.T) {
	q, _ := rampQueue(24, 2*time.Second)
	// Alone: the whole pool at once.
	_, waiting := burst(q, 30, time.Time{})
	if s := q.Stats(); s.InUse != 24 || s.RampHeld != 0 || len(waiting) != 6 {
		t.Fatalf("alone: in use %d, held %d, waiting %d; want 24, 0, 6", s.InUse, s.RampHeld, len(waiting))
	}

	q, clk := rampQueue(24, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)
	_, waiting = burst(q, 28, time.Time{})
	for _, tk := range steady {
		tk.Release()
	}
	clk.Advance(time.Second)
	q.Kick()
	if n := grantedCount(waiting); n != 0 {
		t.Fatalf("%d held requests granted while the steady tenant was active within the window", n)
	}
	clk.Advance(1100 * time.Millisecond)
	q.Kick()
	if n := grantedCount(waiting); n != 21 {
		t.Fatalf("%d held requests granted once the steady tenant was quiet for the window; want 21 (24 less the 3 it held)", n)
	}
	if s := q.Stats(); s.RampHeld != 0 || s.Ramping != 0 {
		t.Fatalf("held %d, ramping %d after the ramp ended", s.RampHeld, s.Ramping)
	}
}

// A held request waits no longer than its deadline, and is refused then.
func TestRampHeldRequestRefusedAtDeadline(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	steadyHolding(t, q, clk, 12)
	_, waiting := burst(q, 4, clk.Now().Add(time.Second))
	if len(waiting) != 1 || !waiting[0].parked {
		t.Fatalf("want one held waiter, got %d", len(waiting))
	}
	clk.Advance(1100 * time.Millisecond)
	q.Kick()
	var rej *Rejection
	if w := waiting[0]; w.state != refused || !errors.As(w.err, &rej) || rej.Reason != Deadline {
		t.Fatalf("held waiter past its deadline: state %v err %v; want a Deadline refusal", w.state, w.err)
	}
	if s := q.Stats(); s.RampHeld != 0 || s.Queued != 0 {
		t.Fatalf("held %d, queued %d after the refusal", s.RampHeld, s.Queued)
	}
}

// The steady tenant's arrivals are not delayed by held requests: they are
// outside the schedule, so neither ahead of it nor counted in its wait.
func TestRampHeldRequestsNotAheadOfOthers(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)
	burst(q, 40, time.Time{})
	clk.Advance(10 * time.Millisecond)
	steady[0].Release()
	steady[1].Release()
	// Two free slots, kept for the steady tenant's peak, 28 held requests:
	// its arrival is granted at once.
	grantedT(t, q, Request{Tenant: "steady", Cost: 100, Deadline: clk.Now().Add(100 * time.Millisecond)})
	if w := q.Waiting(); w != 0 {
		t.Fatalf("Waiting() = %d with only held requests queued; want 0", w)
	}
}

// The ramp converges to the fair queue's max-min shares: the fairness
// harness's loads with the ramp on.
func TestRampKeepsMaxMinFairShares(t *testing.T) {
	loads := mixedLoads()
	served := runLoads(t, QueueConfig{Fair: true, RampWindow: 2 * time.Second}, fairSlots, fairSpeed, loads, fairWarmup, fairHorizon)
	for k, d := range deviations(t, served, loads) {
		if math.Abs(d) > fairMargin {
			t.Errorf("%s: served %+.1f%% off its max-min fair share (margin %.0f%%)", k, 100*d, 100*fairMargin)
		}
	}
}

// A ramping tenant that goes quiet stops counting as ramping once the
// window has passed, with no request to update it: the gauge
// (sluice_queue_ramping_tenants) counted every tenant whose last request
// found it ramping, however long ago (soak8: 0 -> 5 at the end of a soak,
// peak 9, with its bursts long over).
func TestQuietTenantStopsCountingAsRamping(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)
	got, waiting := burst(q, 3, time.Time{})
	if len(got) != 3 || len(waiting) != 0 {
		t.Fatalf("burst: %d granted, %d waiting; want its allowance of 3", len(got), len(waiting))
	}
	if s := q.Stats(); s.Ramping != 1 {
		t.Fatalf("ramping %d during the burst; want 1", s.Ramping)
	}
	for _, tk := range append(steady, got...) {
		tk.Release()
	}
	clk.Advance(3 * time.Second) // past the 2 s window, no request since
	if s := q.Stats(); s.Ramping != 0 {
		t.Fatalf("ramping %d with every tenant quiet past the window; want 0", s.Ramping)
	}
}
