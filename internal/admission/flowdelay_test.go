package admission

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Tenant A holds both slots of the pool and keeps a backlog: the congestion
// is A's. Tenant B, at most half its fair share of the pool's work, is
// neither refused at arrival nor shed, also once its own waits (long only
// because A holds the slots) have stayed above the target for an interval;
// A's arrivals are refused at arrival and A's waiter is shed at the target.
// With the prior (100 cost units per slot-second, 1s mean hold) and 2
// slots, a request with ahead units of cost before it waits 0.5s +
// ahead/200 s: every request here is estimated past the 500ms target, so
// the class-wide discipline this replaces refused B at arrival.
func TestDelayTargetSparesTenantUnderShare(t *testing.T) {
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets}, newCapacity(2).get, clk.Now)
	held := []*Ticket{grantedT(t, q, Request{Tenant: "A", Cost: 100}), grantedT(t, q, Request{Tenant: "A", Cost: 100})}
	start := clk.Now()
	far := start.Add(10 * time.Second)
	var aw []*waiter
	for range 4 {
		aw = append(aw, submitT(t, q, Request{Tenant: "A", Cost: 100, Deadline: far}))
	}
	clk.Advance(600 * time.Millisecond)
	q.Kick() // A's waiters pass the target, are reviewed and kept; A's interval starts
	clk.Set(start.Add(1300 * time.Millisecond))
	late := submitT(t, q, Request{Tenant: "A", Cost: 100, Deadline: far}) // not congested yet
	clk.Set(start.Add(1600 * time.Millisecond))
	q.Kick()
	if !congested(q, Interactive) {
		t.Fatal("A's waits above the target for an interval did not congest it")
	}

	// A, alone in the queue and so at its share, its flow congested:
	// refused at arrival by the delay target, far from its deadline.
	_, _, err := q.submit(Request{Tenant: "A", Cost: 100, Deadline: far})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Waited != 0 || !strings.Contains(rej.Message, "overloaded queue allows") {
		t.Fatalf("A's arrival in congestion: %v, want refused over its share by the delay target", err)
	}

	// B, a quarter of its share (100 of 800 units of work, two tenants):
	// estimated 1s, past the target, within its 3s deadline: queued.
	b1 := submitT(t, q, Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(3 * time.Second)})

	clk.Set(start.Add(1800 * time.Millisecond))
	q.Kick()
	refusedWith(t, late, Shed) // A's waiter at its target, A congested and over its share

	clk.Set(start.Add(2100 * time.Millisecond))
	q.Kick() // b1 at its target: reviewed, kept (its own flow is not congested)
	clk.Set(start.Add(3200 * time.Millisecond))
	q.Kick() // b1 above the target for an interval: B's flow is congested too
	if !flowCongested(q, "B") {
		t.Fatal("B's flow not congested after an interval above the target")
	}
	// Still B is at half its share (200 of 800): bounded by its deadline
	// only, as in a burst: estimated 2s, queued.
	b2 := submitT(t, q, Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(5 * time.Second)})
	clk.Set(start.Add(3700 * time.Millisecond))
	q.Kick() // b2 at its target: not shed
	for i, w := range []*waiter{b1, b2} {
		if w.state != waiting {
			t.Fatalf("B's waiter %d state %v (%v): a tenant under its share must not be shed", i, w.state, w.err)
		}
	}

	// Slots go in fair order: A's committed head, then B's.
	held[0].Release()
	held[1].Release()
	if aw[0].state != granted || b1.state != granted {
		t.Fatalf("grants after release: A's head %v, B's head %v; want both granted", aw[0].state, b1.state)
	}
}

// A light tenant's prompt grants do not end the heavy tenant's congestion:
// sojourns are measured per flow, and B's say nothing about A's backlog.
func TestDelayTargetLightGrantsKeepHeavyCongested(t *testing.T) {
	q, clk, held := codelQueue(t)
	congest(t, q, clk)
	b := submitT(t, q, Request{Tenant: "b", Cost: 1, Deadline: clk.Now().Add(2 * time.Second)})
	held[0].Release() // A's committed waiter
	held[1].Release() // b goes ahead of A's newer waiters in fair order, at once
	if b.state != granted {
		t.Fatalf("b state %v, want granted", b.state)
	}
	if !flowCongested(q, "a") {
		t.Fatal("a light tenant's quick grant ended the heavy tenant's congestion")
	}
}

func flowCongested(q *Queue, key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.classes[Interactive].delays[key]
	return d != nil && d.congested
}
