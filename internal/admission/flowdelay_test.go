package admission

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Tenant A holds the pool's one slot with a large request: the pool's work
// is A's. Tenant B, at most half its fair share of the pool's work, is
// exempt from the delay target: estimated past it at arrival, queued
// within its deadline, and kept at its target review although it cannot
// start then (what delays it is A's work, and refusing B would not make
// that drain faster). A's own arrival, estimated past the target, is
// refused at once however far its deadline. With the prior (1s mean hold)
// and one slot, every wait here is estimated at 1s at least.
func TestDelayTargetSparesTenantUnderShare(t *testing.T) {
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "A", Cost: 1000})
	far := clk.Now().Add(10 * time.Second)

	_, _, err := q.submit(Request{Tenant: "A", Cost: 100, Deadline: far})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Waited != 0 || !strings.Contains(rej.Message, "delay target") {
		t.Fatalf("A's arrival past the target: %v, want refused at once by the delay target", err)
	}

	// B: 100 of 1100 units of work, two tenants: under half its share.
	b := submitT(t, q, Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(3 * time.Second)})
	clk.Advance(500 * time.Millisecond)
	q.Kick() // b at its target, 1s still ahead of it: kept, B is light
	clk.Advance(time.Second)
	q.Kick()
	if b.state != waiting {
		t.Fatalf("B's waiter state %v (%v): a tenant under its share is bounded by its deadline only", b.state, b.err)
	}
	held.Release()
	if b.state != granted {
		t.Fatalf("B's waiter %v after the release, want granted", b.state)
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

// The review's case: a light tenant's request, let in with a 1.2s deadline
// (estimated 1s: A's request holds the one slot), is reviewed at the 500ms
// delay target, where the 1s still ahead (1.5s with the margin a kept
// waiter must fit with) no longer fits the 700ms left: refused then, code
// deadline. The message says the delay target's review decided it and
// what it weighed; it said "could not start before its deadline after
// waiting 500ms", which read as a 500ms deadline.
func TestDelayTargetReviewRefusalSaysWhatDecided(t *testing.T) {
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets}, newCapacity(1).get, clk.Now)
	grantedT(t, q, Request{Tenant: "A", Cost: 1000})
	b := submitT(t, q, Request{Tenant: "B", Cost: 100, Deadline: clk.Now().Add(1200 * time.Millisecond)})
	clk.Advance(500 * time.Millisecond)
	q.Kick()
	rej := refusedWith(t, b, Deadline)
	if rej.Waited != 500*time.Millisecond {
		t.Fatalf("refused after %v, want at the 500ms target", rej.Waited)
	}
	want := "all backends for model 'm' are saturated: at the queue's 500ms delay target the request's wait still ahead " +
		"was re-estimated at 1s (1.5s with the estimate's margin), more than the 700ms left for it to start before its deadline"
	if rej.Message != want {
		t.Fatalf("message %q\nwant    %q", rej.Message, want)
	}
}
