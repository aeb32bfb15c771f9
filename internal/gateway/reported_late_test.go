package gateway

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A backend that reports free slots and no queue but starts this
// gateway's streams late is full, as one that queues: it counts what it
// runs for this gateway, not its room. Late is a stream waiting for its
// first token past the prompt bound now, or a first token later than the
// pool's LateStart (the interactive delay target) within a reading's
// trust. A first token late only by the prompt bound (a long prompt's
// prefill) keeps the room. On the old code the room stood throughout
// (18 in every case): on a slow-prefill simulator a newcomer's five long
// prompts went in and the established tenant's next streams were refused
// (docs/RELIABILITY.md, branch latebound).
func TestReportedCapacityNoneWhileStartsLate(t *testing.T) {
	at := time.Unix(1000, 0)
	clock := at
	now := func() time.Time { return clock }
	mk := func(url string, l endpoint.Load) *endpoint.Backend {
		b, err := endpoint.New(endpoint.Spec{URL: url}, endpoint.HealthPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		l.At, l.Expires = at, at.Add(3*time.Second)
		b.SetLoad(l)
		return b
	}
	// x: 14 of 16 run by others, room 2. y: idle, bound 16, room 16.
	x := mk("http://x", endpoint.Load{Running: 14, BatchBound: 16})
	y := mk("http://y", endpoint.Load{BatchBound: 16})
	pool := NewPool(PoolParts{Model: &config.Model{Name: "m1"}, Backends: []*endpoint.Backend{x, y}, Now: now,
		LateStart: 500 * time.Millisecond})
	check := func(when string, want int) {
		t.Helper()
		if got, _ := pool.ReportedCapacity(0); got != want {
			t.Errorf("%s: reported capacity %d, want %d", when, got, want)
		}
	}
	// y's two streams start in 20 ms: its typical time to first token.
	for range 2 {
		y.StartWaitingOf(clock, endpoint.Wait{})
		y.FirstTokenOf(clock.Add(20*time.Millisecond), 20*time.Millisecond, endpoint.Wait{})
	}
	check("both start promptly", 18)
	y.StartWaitingOf(clock, endpoint.Wait{})
	clock = clock.Add(50 * time.Millisecond)
	check("y's stream waiting 50 ms", 18)
	clock = clock.Add(250 * time.Millisecond)
	check("y's stream waiting 300 ms (past the prompt bound)", 2)
	// Late by the prompt bound, not by LateStart: a long prompt's prefill.
	y.FirstTokenOf(clock, 300*time.Millisecond, endpoint.Wait{})
	check("y's stream started in 300 ms", 18)
	y.StartWaitingOf(clock, endpoint.Wait{})
	clock = clock.Add(800 * time.Millisecond)
	y.FirstTokenOf(clock, 800*time.Millisecond, endpoint.Wait{})
	check("y's stream started in 800 ms, just now", 2)
	read := func() { // the next scrapes: the same load
		y.SetLoad(endpoint.Load{BatchBound: 16, At: clock, Expires: clock.Add(3 * time.Second)})
		x.SetLoad(endpoint.Load{Running: 14, BatchBound: 16, At: clock, Expires: clock.Add(3 * time.Second)})
	}
	clock = clock.Add(2 * time.Second)
	read()
	check("y's stream started in 800 ms, 2 s ago", 2)
	clock = clock.Add(time.Second)
	read()
	check("y's stream started in 800 ms, 3 s ago (a reading's trust)", 18)
}
