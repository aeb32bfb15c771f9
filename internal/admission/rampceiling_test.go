package admission

import (
	"testing"
	"time"
)

// reportedQueue is rampQueue with the engines' reported room read from
// *reported (0: none reported; reportedNoneQueue reports a room of 0).
func reportedQueue(capacity int, reported *int) (*Queue, *fakeClock) {
	clk := newFakeClock()
	cfg := QueueConfig{Fair: true, RampWindow: 2 * time.Second, ReportedCapacity: func(float64) (int, bool) { return *reported, *reported > 0 }}
	return NewQueue(cfg, newCapacity(capacity).get, clk.Now), clk
}

// The cold case ramp6 left open: a fresh pool on adaptive limits, A on two
// long streams, B on one and then five at once, with nothing proven
// before. The engine reports a batch of 16 with nothing queued: B's free
// slots may reach 16 less A's margin above its peak (⌈√2⌉ = 2), so its five
// start at once (8 of an adaptive capacity of 8 in use). On the old queue
// all five were held with 3 in use.
func TestRampReportedCeilingLetsColdNewcomerGrow(t *testing.T) {
	reported := 16
	q, clk := reportedQueue(8, &reported)
	got, held := twoTenants(t, q, clk, true)
	if len(got) != 5 {
		t.Fatalf("B's five: %d granted at once, %d held with %d in use; want all five: the engines report 16 slots, A's margin is 2",
			len(got), len(held), q.Stats().InUse)
	}
	if s := q.Stats(); s.InUse != 8 || s.RampCeiling != 16 || s.RampProven != 3 {
		t.Fatalf("in use %d, ceiling %d, proven %d; want 8, 16, 3", s.InUse, s.RampCeiling, s.RampProven)
	}
}

// The ceiling less the others' margins bounds the newcomer: with room for
// 6 reported (other clients run the rest of the engine), 6 less A's margin
// of 2 is 4, so B gets one more slot beside A's two and its first, and
// the four others wait for the ramp.
func TestRampReportedCeilingKeepsOthersMargin(t *testing.T) {
	reported := 6
	q, clk := reportedQueue(16, &reported)
	got, held := twoTenants(t, q, clk, true)
	if len(got) != 1 || len(held) != 4 {
		t.Fatalf("B's five: %d granted, %d held; want 1 and 4: 6 reported less A's margin of 2", len(got), len(held))
	}
	// A's margin stays free for A.
	for range 2 {
		grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	}
}

// No reported bound (none exported, a stale scrape, or an engine that
// queues: ReportedCapacity 0) leaves the ramp as it was: B's five are
// held with 3 in use. A bound reported later lets them go at the queue's
// next look.
func TestRampNoReportedCeilingHolds(t *testing.T) {
	reported := 0
	q, clk := reportedQueue(8, &reported)
	got, _ := twoTenants(t, q, clk, true)
	if len(got) != 0 {
		t.Fatalf("B's five: %d granted at once with no bound reported; want none", len(got))
	}
	if s := q.Stats(); s.RampHeld != 5 || s.RampCeiling != 0 {
		t.Fatalf("held %d, ceiling %d; want 5, 0", s.RampHeld, s.RampCeiling)
	}
	reported = 16
	clk.Advance(time.Second)
	q.Kick()
	if s := q.Stats(); s.RampHeld != 0 || s.InUse != 8 {
		t.Fatalf("after a bound of 16 reported: held %d, in use %d; want 0, 8", s.RampHeld, s.InUse)
	}
}

// A reported bound supersedes the memory of prompt starts downwards too:
// the engines proved 10 earlier, but report room for only 5 now (other
// clients took the rest), so B gets nothing beyond 5 less A's margin.
func TestRampReportedCeilingBelowMemory(t *testing.T) {
	reported := 0
	q, clk := reportedQueue(16, &reported)
	provenEarlier(t, q, clk, 10)
	reported = 5
	got, _ := twoTenants(t, q, clk, true)
	if len(got) != 0 {
		t.Fatalf("B's five: %d granted with room for 5 reported (A's margin 2, 3 in use); want none", len(got))
	}
}

// No probe goes past a reported bound: beside a tenant on one slot (no
// margin) a newcomer probes above the base while the engines start it,
// but not past the room they report.
func TestRampProbeStopsAtReportedCeiling(t *testing.T) {
	reported := 3
	q, clk := reportedQueue(16, &reported)
	a := grantedT(t, q, Request{Tenant: "A", Cost: 100, Streams: true})
	clk.Advance(20 * time.Millisecond)
	a.FirstToken(true)
	clk.Advance(300 * time.Millisecond)
	b := grantedT(t, q, Request{Tenant: "B", Cost: 100, Streams: true})
	clk.Advance(20 * time.Millisecond)
	b.FirstToken(true)
	clk.Advance(500 * time.Millisecond)
	got, held := streamsOf(t, q, clk, "B", 3)
	firstTokens(q, clk, time.Second, true, got, held)
	if s := q.Stats(); s.InUse != 3 || s.RampHeld != 2 {
		t.Fatalf("in use %d, held %d (probes %d); want 3 and 2: the engines report room for 3", s.InUse, s.RampHeld, s.RampProbes)
	}
}
