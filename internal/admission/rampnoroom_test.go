package admission

import (
	"testing"
	"time"
)

// noRoomQueue is rampQueue whose engines report a room of *room, 0
// included (ReportedCapacity ok), unless *none says nothing is reported.
func noRoomQueue(capacity int, room *int, none *bool) (*Queue, *fakeClock) {
	clk := newFakeClock()
	cfg := QueueConfig{Fair: true, RampWindow: 2 * time.Second,
		ReportedCapacity: func(float64) (int, bool) { return *room, !*none }}
	return NewQueue(cfg, newCapacity(capacity).get, clk.Now), clk
}

// A room of 0 reported (an engine whose cache has no room for the
// newcomer's need, with none of this gateway's requests there to count)
// is a ceiling of 0, not no ceiling: the engines proved 10 starts earlier,
// and read as none the room gave the memory's 10 less A's margin, so B's
// five went to wait inside an engine that had said it had no room (the
// code of branch kvexact). Held now, they go at the queue's next look once
// the engines report room.
func TestRampReportedNoRoomIsNoRoom(t *testing.T) {
	room, none := 0, true
	q, clk := noRoomQueue(16, &room, &none)
	provenEarlier(t, q, clk, 10)
	none = false
	got, _ := twoTenants(t, q, clk, true)
	if len(got) != 0 {
		t.Fatalf("B's five: %d granted with a room of 0 reported (the memory proved 10); want none", len(got))
	}
	if s := q.Stats(); s.RampHeld != 5 || s.RampCeiling != 0 {
		t.Fatalf("held %d, ceiling %d; want 5, 0", s.RampHeld, s.RampCeiling)
	}
	room = 16
	clk.Advance(time.Second)
	q.Kick()
	if s := q.Stats(); s.RampHeld != 0 || s.InUse != 8 {
		t.Fatalf("after a room of 16 reported: held %d, in use %d; want 0, 8", s.RampHeld, s.InUse)
	}
}

// No probe goes past a room of 0 either: beside a tenant on one slot (no
// margin) a newcomer probes above the base while nothing is reported,
// one slot at a time as the engines start it; with a room of 0 reported
// none goes (the code of branch kvexact probed as with none).
func TestRampNoProbePastNoRoom(t *testing.T) {
	for _, c := range []struct {
		none  bool
		inUse int
	}{{none: true, inUse: 5}, {none: false, inUse: 2}} {
		room, none := 0, c.none
		q, clk := noRoomQueue(16, &room, &none)
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
		if s := q.Stats(); s.InUse != c.inUse {
			t.Errorf("none reported %t: in use %d, held %d (probes %d); want %d in use", c.none, s.InUse, s.RampHeld, s.RampProbes, c.inUse)
		}
	}
}
