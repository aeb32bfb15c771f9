package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A reload's new settings reach the running queue: its waiters stay
// queued in their order, and its bounds count them.
func TestSetConfigKeepsWaitersAndCountsThem(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, MaxQueued: 3}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	w1 := submitT(t, q, Request{Tenant: "a"})
	w2 := submitT(t, q, Request{Tenant: "b"})
	w3 := submitT(t, q, Request{Tenant: "c"})

	// Lowered under what is queued: nobody evicted, arrivals refused
	// (of any tenant: a push-out cannot bring the queue under its bound).
	q.SetConfig(QueueConfig{Fair: true, MaxQueued: 1})
	for _, w := range []*waiter{w1, w2, w3} {
		if w.state != waiting {
			t.Fatalf("waiter %d %v after the bound was lowered; want still waiting", w.seq, w.state)
		}
	}
	_, _, err := q.submit(Request{Tenant: "d"})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Reason != QueueFull {
		t.Fatalf("arrival over the lowered bound: %v; want QueueFull", err)
	}

	// Raised: arrivals queue behind the waiters already there.
	q.SetConfig(QueueConfig{Fair: true, MaxQueued: 10})
	w4 := submitT(t, q, Request{Tenant: "d"})
	if s := q.Stats(); s.InUse != 1 || s.Queued != 4 {
		t.Fatalf("stats %+v; want the held ticket and 4 waiters counted", s)
	}
	held.Release()
	order := []*waiter{w1, w2, w3, w4}
	for i, w := range order {
		if w.state != granted {
			t.Fatalf("grant %d went elsewhere: waiter %d is %v", i, w.seq, w.state)
		}
		for _, later := range order[i+1:] {
			if later.state != waiting {
				t.Fatalf("waiter %d %v before waiter %d was served", later.seq, later.state, w.seq)
			}
		}
		w.ticket.Release()
	}
}

// A cost bound lowered under what is queued evicts nobody either.
func TestSetConfigLoweredCostBoundEvictsNobody(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true, MaxQueuedCost: 100}, newCapacity(1).get, newFakeClock().Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	flood := []*waiter{submitT(t, q, Request{Tenant: "a", Cost: 40}), submitT(t, q, Request{Tenant: "a", Cost: 40})}
	q.SetConfig(QueueConfig{Fair: true, MaxQueuedCost: 50})
	if _, _, err := q.submit(Request{Tenant: "b", Cost: 5}); err == nil {
		t.Fatal("an arrival queued past the lowered cost bound")
	}
	for _, w := range flood {
		if w.state != waiting {
			t.Fatalf("waiter %d %v; want kept", w.seq, w.state)
		}
	}
	held.Release()
	flood[0].ticket.Release()
	flood[1].ticket.Release()
}

// Delay targets reach the class and its flows' states; turning the
// tenant ramp off forgets every ramp, so no waiter stays held by one.
func TestSetConfigTargetsAndRamp(t *testing.T) {
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = time.Minute
	cfg := QueueConfig{Fair: true, Targets: targets, RampWindow: time.Minute}
	q := NewQueue(cfg, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	w := submitT(t, q, Request{Tenant: "b"})
	q.mu.Lock()
	q.classes[Interactive].flowDelay("b")
	q.mu.Unlock()
	cfg.Targets[Interactive] = time.Second
	cfg.RampWindow = 0
	q.SetConfig(cfg)
	q.mu.Lock()
	c := q.classes[Interactive]
	got, flow, ramps := c.delay.target, c.delays["b"].target, len(q.ramps)
	q.mu.Unlock()
	if got != time.Second || flow != time.Second || c.delay.interval != 2*time.Second {
		t.Fatalf("class target %v, flow target %v; want 1s", got, flow)
	}
	if ramps != 0 {
		t.Fatalf("%d ramps kept with the ramp off", ramps)
	}
	held.Release()
	if w.state != granted {
		t.Fatalf("waiter %v; want granted", w.state)
	}
	w.ticket.Release()
}

// SetConfig runs beside waiters and the gateway's reads of the delay
// target (a guard for the race detector: the target was read unlocked
// while it could not change).
func TestSetConfigWhileWaiting(t *testing.T) {
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = time.Hour
	cfg := QueueConfig{Fair: true, Targets: targets}
	q := NewQueue(cfg, newCapacity(1).get, newFakeClock().Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	ch := acquireAsync(q, context.Background(), Request{Tenant: "b"})
	eventually(t, "b queued", func() bool { return q.Stats().Queued == 1 })
	read := make(chan struct{})
	go func() {
		defer close(read)
		for range 50 {
			_ = q.DelayTarget(Interactive)
		}
	}()
	for i := range 50 {
		cfg.Targets[Interactive] = time.Hour + time.Duration(i)*time.Second
		q.SetConfig(cfg)
	}
	<-read
	held.Release()
	r := await(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.t.Release()
}
