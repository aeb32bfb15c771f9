package breaker

import (
	"fmt"
	"testing"

	"github.com/sluice-gw/sluice/internal/outcome"
)

func TestGroupLimit(t *testing.T) {
	cases := []struct {
		members int
		ratio   float64
		want    int
	}{
		{1, 0.5, 1}, // Envoy: at least one may always be ejected
		{2, 0.5, 1},
		{3, 0.5, 1},
		{4, 0.5, 2},
		{5, 0.5, 2},
		{4, 0, 2}, // default 0.5
		{10, 0.3, 3},
		{10, 0.1, 1},
		{4, 1, 4},
		{4, 7, 4},
	}
	for _, tc := range cases {
		g := NewGroup(tc.ratio)
		for range tc.members {
			g.Add(New(testSettings()))
		}
		if got := g.MaxEjected(); got != tc.want {
			t.Errorf("%d members, ratio %v: MaxEjected = %d, want %d", tc.members, tc.ratio, got, tc.want)
		}
	}
}

// TestGroupCapsEjection: 4 backends, cap 0.5. Two may open; the third trip
// is refused and counted, and that breaker keeps serving. Once an ejected
// one closes, the still-failing third may open.
func TestGroupCapsEjection(t *testing.T) {
	g := NewGroup(0.5)
	s := testSettings()
	bs := make([]*Breaker, 4)
	for i := range bs {
		bs[i] = New(s)
		g.Add(bs[i])
	}
	trip(t, bs[0], t0)
	trip(t, bs[1], t0)
	run(t, bs[2], t0, repeat(10, evFail))
	if got := bs[2].State(t0); got != Closed {
		t.Fatalf("third trip: state %v, want closed (cap)", got)
	}
	if got := bs[2].Stats(t0); got.RefusedTrips != 1 || got.Trips != 0 || got.Window.Calls != 0 {
		t.Errorf("refused breaker stats = %+v, want 1 refused, 0 trips, window cleared", got)
	}
	if g.RefusedTrips() != 1 || g.Ejected() != 2 {
		t.Errorf("group: refused %d ejected %d, want 1 and 2", g.RefusedTrips(), g.Ejected())
	}
	// The refused breaker still admits calls; ten more failures are a
	// second refused trip, not one per call.
	run(t, bs[2], t0, repeat(10, evFail))
	if got := bs[2].Stats(t0).RefusedTrips; got != 2 {
		t.Errorf("RefusedTrips = %d, want 2", got)
	}
	// bs[0] recovers: half-open counts as ejected until it closes.
	now := t0.Add(s.OpenFor)
	d1, _ := bs[0].Allow(now)
	run(t, bs[2], now, repeat(10, evFail))
	if bs[2].State(now) != Closed {
		t.Fatal("tripped while a half-open member still held the slot")
	}
	d1(now, outcome.Success, 0)
	call(bs[0], now, evOK)
	if bs[0].State(now) != Closed {
		t.Fatalf("bs[0] did not close: %v", bs[0].State(now))
	}
	run(t, bs[2], now, repeat(10, evFail))
	if bs[2].State(now) != Open {
		t.Errorf("third breaker still closed after a slot freed")
	}
	// A half-open member whose trial fails reopens even at the cap.
	now = now.Add(s.OpenFor)
	call(bs[1], now, evFail)
	if bs[1].State(now) != Open {
		t.Errorf("re-open refused at cap: %v", bs[1].State(now))
	}
}

func TestGroupMembership(t *testing.T) {
	g1, g2 := NewGroup(0.5), NewGroup(0.5)
	a, b := New(testSettings()), New(testSettings())
	g1.Add(a)
	g1.Add(a) // twice is harmless
	g1.Add(b)
	if g1.Len() != 2 {
		t.Fatalf("Len = %d, want 2", g1.Len())
	}
	g2.Add(a) // moves
	if g1.Len() != 1 || g2.Len() != 1 {
		t.Fatalf("after move: g1 %d g2 %d, want 1 and 1", g1.Len(), g2.Len())
	}
	g1.Remove(a) // not a member of g1 any more: no-op
	if g2.Len() != 1 {
		t.Fatal("Remove from the wrong group took effect")
	}
	g2.Remove(a)
	if g2.Len() != 0 {
		t.Fatal("Remove did nothing")
	}
	// Outside any group a breaker trips freely.
	trip(t, a, t0)
	// A one-member group may eject its only backend.
	trip(t, b, t0)
	if g1.Ejected() != 1 {
		t.Errorf("Ejected = %d, want 1", g1.Ejected())
	}
}

// TestGroupCapUnderConcurrentTrips: 32 breakers in a 0.5 group, each fed
// failures by its own goroutine so they all reach MinRequests together;
// never more than 16 may open.
func TestGroupCapUnderConcurrentTrips(t *testing.T) {
	const n = 32
	for round := range 30 {
		g := NewGroup(0.5)
		bs := make([]*Breaker, n)
		for i := range bs {
			bs[i] = New(testSettings())
			g.Add(bs[i])
		}
		runParallel(t, n, func(w int) {
			for range 20 {
				call(bs[w], t0, evFail)
			}
		})
		opened := 0
		for _, b := range bs {
			if b.State(t0) == Open {
				opened++
			}
		}
		if opened != n/2 || g.Ejected() != n/2 {
			t.Fatalf("round %d: %d open (group says %d), want exactly %d", round, opened, g.Ejected(), n/2)
		}
		if g.RefusedTrips() < n/2 {
			t.Fatalf("round %d: %d refused trips, want at least %d", round, g.RefusedTrips(), n/2)
		}
	}
}

func ExampleGroup() {
	g := NewGroup(0.5)
	for range 4 {
		g.Add(New(Settings{}))
	}
	fmt.Println(g.MaxEjected())
	// Output: 2
}
