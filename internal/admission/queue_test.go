package admission

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/outcome"
)

func TestQueueGrantsUpToCapacityThenQueues(t *testing.T) {
	clk := newFakeClock()
	capN := newCapacity(2)
	q := NewQueue(QueueConfig{Fair: true}, capN.get, clk.Now)
	a := grantedT(t, q, Request{Tenant: "a"})
	grantedT(t, q, Request{Tenant: "a"})
	w := submitT(t, q, Request{Tenant: "b"})
	if s := q.Stats(); s.InUse != 2 || s.Queued != 1 {
		t.Fatalf("stats %+v", s)
	}
	a.Release()
	a.Release() // idempotent: must not free a second slot
	if w.state != granted {
		t.Fatal("waiter not granted on release")
	}
	if s := q.Stats(); s.InUse != 2 || s.Queued != 0 || s.Granted != 3 {
		t.Fatalf("after release: %+v", s)
	}
}

func TestQueueKickGrantsWhenCapacityGrows(t *testing.T) {
	clk := newFakeClock()
	capN := newCapacity(1)
	q := NewQueue(QueueConfig{Fair: true}, capN.get, clk.Now)
	grantedT(t, q, Request{})
	w1 := submitT(t, q, Request{})
	w2 := submitT(t, q, Request{})
	capN.set(3)
	q.Kick()
	if w1.state != granted || w2.state != granted {
		t.Fatal("Kick did not grant after capacity grew")
	}
}

func TestQueueAcquireBlocksUntilRelease(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, newFakeClock().Now)
	held, err := q.Acquire(context.Background(), Request{Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ch := acquireAsync(q, context.Background(), Request{Tenant: "b"})
	eventually(t, "second request queued", func() bool { return q.Stats().Queued == 1 })
	held.Release()
	r := await(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.t.Release()
	if s := q.Stats(); s.InUse != 0 || len(s.Tenants) != 0 {
		t.Fatalf("leftover state: %+v", s)
	}
}

func TestQueueInteractiveBeforeBatch(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, newFakeClock().Now)
	held := grantedT(t, q, Request{})
	b := submitT(t, q, Request{Tenant: "b", Class: Batch})
	i := submitT(t, q, Request{Tenant: "i", Class: Interactive})
	held.Release()
	if i.state != granted || b.state != waiting {
		t.Fatalf("interactive %v batch %v; want interactive granted first", i.state, b.state)
	}
	// An interactive arrival does not queue behind waiting batch work.
	i.ticket.Release() // grants b
	q2 := NewQueue(QueueConfig{Fair: true}, newCapacity(2).get, newFakeClock().Now)
	grantedT(t, q2, Request{Class: Batch})
	grantedT(t, q2, Request{Class: Interactive})
}

func TestQueueCancelWhileQueuedLeavesAtOnce(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, newFakeClock().Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	ctx, cancel := context.WithCancel(context.Background())
	ch := acquireAsync(q, ctx, Request{Tenant: "b", Cost: 500})
	eventually(t, "request queued", func() bool { return q.Stats().Queued == 1 })
	cancel()
	r := await(t, ch)
	if !errors.Is(r.err, context.Canceled) || r.t != nil {
		t.Fatalf("Acquire = %v, %v; want context.Canceled", r.t, r.err)
	}
	s := q.Stats()
	if s.Queued != 0 || s.QueuedCost != 0 || s.Cancelled != 1 || s.InUse != 1 {
		t.Fatalf("after cancel: %+v", s)
	}
	held.Release()
	if s := q.Stats(); s.InUse != 0 {
		t.Fatalf("slot leaked: %+v", s)
	}
}

func TestQueueAcquireWithDoneContext(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, newFakeClock().Now)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Acquire(ctx, Request{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if s := q.Stats(); s.InUse != 0 {
		t.Fatalf("granted to a dead context: %+v", s)
	}
}

// A grant that races with the client going away must hand the slot back.
func TestQueueGrantRacingCancelReturnsSlot(t *testing.T) {
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, newFakeClock().Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	w := submitT(t, q, Request{Tenant: "b"})
	next := submitT(t, q, Request{Tenant: "c"})
	held.Release() // grants w; its client has not seen it yet
	if w.state != granted {
		t.Fatal("not granted")
	}
	if err := q.abandon(w, context.Canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandon: %v", err)
	}
	if next.state != granted {
		t.Fatal("returned slot did not go to the next waiter")
	}
	next.ticket.Release()
	w.ticket.Release() // a late Release of the abandoned ticket must be a no-op
	if s := q.Stats(); s.InUse != 0 || s.Queued != 0 {
		t.Fatalf("slot leaked: %+v", s)
	}

	// The same race with real goroutines, many times.
	for range 300 {
		held := grantedT(t, q, Request{Tenant: "a"})
		ctx, cancel := context.WithCancel(context.Background())
		ch := acquireAsync(q, ctx, Request{Tenant: "b"})
		eventually(t, "queued", func() bool { return q.Stats().Queued == 1 })
		var wg sync.WaitGroup
		wg.Go(cancel)
		wg.Go(held.Release)
		wg.Wait()
		if r := await(t, ch); r.t != nil {
			r.t.Release()
		}
		if s := q.Stats(); s.InUse != 0 || s.Queued != 0 {
			t.Fatalf("slot leaked: %+v", s)
		}
	}
}

func TestQueueBounds(t *testing.T) {
	reject := func(t *testing.T, q *Queue, r Request, want Reason) {
		t.Helper()
		_, _, err := q.submit(r)
		var rej *Rejection
		if !errors.As(err, &rej) || rej.Reason != want || rej.RetryAfter <= 0 {
			t.Fatalf("submit(%+v) = %v; want %v with Retry-After", r, err, want)
		}
	}
	t.Run("total count", func(t *testing.T) {
		q := NewQueue(QueueConfig{Fair: true, MaxQueued: 2}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "a"})
		submitT(t, q, Request{Tenant: "b"})
		reject(t, q, Request{Tenant: "c"}, QueueFull) // nobody over share to push out
		if got := QueueFull.HTTPStatus(); got != http.StatusServiceUnavailable {
			t.Fatal(got)
		}
	})
	t.Run("per tenant count", func(t *testing.T) {
		q := NewQueue(QueueConfig{Fair: true, MaxQueuedPerTenant: 2}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "a"})
		submitT(t, q, Request{Tenant: "a"})
		reject(t, q, Request{Tenant: "a"}, TenantQueueFull)
		submitT(t, q, Request{Tenant: "b"})
		if got := TenantQueueFull.HTTPStatus(); got != http.StatusTooManyRequests {
			t.Fatal(got)
		}
	})
	t.Run("per tenant cost", func(t *testing.T) {
		q := NewQueue(QueueConfig{Fair: true, MaxQueuedCostPerTenant: 100}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "a", Cost: 60})
		reject(t, q, Request{Tenant: "a", Cost: 60}, TenantQueueFull)
		submitT(t, q, Request{Tenant: "a", Cost: 40})
		submitT(t, q, Request{Tenant: "b", Cost: 60})
	})
	t.Run("total cost", func(t *testing.T) {
		q := NewQueue(QueueConfig{MaxQueuedCost: 100}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "a", Cost: 50})
		submitT(t, q, Request{Tenant: "b", Cost: 50})
		reject(t, q, Request{Tenant: "c", Cost: 10}, QueueFull)
		reject(t, q, Request{Tenant: "c", Cost: 101}, QueueFull) // can never fit
		if s := q.Stats(); s.Queued != 2 || s.QueuedCost != 100 {
			t.Fatalf("%+v", s)
		}
		// With fairness, a tenant already holding half is over its share
		// of a three-way queue; a newcomer pushes the larger one out.
		q = NewQueue(QueueConfig{Fair: true, MaxQueuedCost: 100}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "a", Cost: 60})
		b := submitT(t, q, Request{Tenant: "b", Cost: 40})
		reject(t, q, Request{Tenant: "a", Cost: 10}, TenantQueueFull)
		submitT(t, q, Request{Tenant: "c", Cost: 10})
		if s := q.Stats(); b.state != waiting || s.Queued != 2 || s.Tenants["a"].Queued != 0 {
			t.Fatalf("want a's 60 pushed out: %+v", s)
		}
	})
	t.Run("flood is pushed out for a tenant under its share", func(t *testing.T) {
		q := NewQueue(QueueConfig{Fair: true, MaxQueued: 4}, newCapacity(0).get, newFakeClock().Now)
		var flood []*waiter
		for range 4 {
			flood = append(flood, submitT(t, q, Request{Tenant: "flood"}))
		}
		polite := submitT(t, q, Request{Tenant: "polite"})
		var rej *Rejection
		if flood[3].state != refused || !errors.As(flood[3].err, &rej) || rej.Reason != TenantQueueFull {
			t.Fatalf("newest flood request: state %v err %v; want pushed out", flood[3].state, flood[3].err)
		}
		if polite.state != waiting || q.Stats().Queued != 4 {
			t.Fatal("polite request not queued in the room made")
		}
		// The flood itself cannot push anyone out: it is over its share.
		reject(t, q, Request{Tenant: "flood"}, TenantQueueFull)
	})
	t.Run("no push-out without fairness", func(t *testing.T) {
		q := NewQueue(QueueConfig{MaxQueued: 2}, newCapacity(0).get, newFakeClock().Now)
		submitT(t, q, Request{Tenant: "flood"})
		submitT(t, q, Request{Tenant: "flood"})
		reject(t, q, Request{Tenant: "polite"}, QueueFull)
	})
}

func TestEstimateCost(t *testing.T) {
	for _, c := range []struct {
		bytes, max, def int
		want            float64
	}{
		{400, 100, 16, 200}, // 100 prompt tokens + 100
		{401, 0, 16, 117},   // ceil(401/4) = 101, + default 16
		{0, 0, 0, 1},        // never free
		{-5, -1, 16, 16},
	} {
		if got := EstimateCost(c.bytes, c.max, c.def); got != c.want {
			t.Errorf("EstimateCost(%d, %d, %d) = %v, want %v", c.bytes, c.max, c.def, got, c.want)
		}
	}
}

func TestStaticLimiter(t *testing.T) {
	var l Limiter = Static(8)
	l.Observe(newFakeClock().Now(), 0, 100, outcome.Busy)
	if l.Limit() != 8 {
		t.Fatal(l.Limit())
	}
}
