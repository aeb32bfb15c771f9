package admission

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// rejected asserts that Acquire refused r at once (it would block forever
// otherwise: nothing in these tests releases a slot) with the given reason.
func rejected(t *testing.T, q *Queue, r Request, want Reason) *Rejection {
	t.Helper()
	res := await(t, acquireAsync(q, context.Background(), r))
	var rej *Rejection
	if !errors.As(res.err, &rej) {
		t.Fatalf("Acquire(%+v) = %v, %v; want a *Rejection", r, res.t, res.err)
	}
	if rej.Reason != want {
		t.Fatalf("reason %v (%s); want %v", rej.Reason, rej.Message, want)
	}
	if rej.RetryAfter <= 0 {
		t.Fatalf("Retry-After %v", rej.RetryAfter)
	}
	return rej
}

// With the prior (100 cost units per slot-second, 1s mean hold) and one
// slot, a queue holding 1000 units of one tenant's work means ~11s of wait
// for anything behind it.
func deadlineQueue(t *testing.T, fair bool) (*Queue, *fakeClock) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: fair}, newCapacity(1).get, clk.Now)
	grantedT(t, q, Request{Tenant: "other"})
	for range 10 {
		submitT(t, q, Request{Tenant: "hog", Cost: 100})
	}
	return q, clk
}

func TestDeadlineRefusedAtOnceWhenTenantOverShare(t *testing.T) {
	q, clk := deadlineQueue(t, true)
	rej := rejected(t, q, Request{Tenant: "hog", Cost: 100, Deadline: clk.Now().Add(5 * time.Second)}, TenantOverShare)
	if !strings.Contains(rej.Message, "tenant 'hog' is over its fair share") {
		t.Fatalf("message %q", rej.Message)
	}
	// wait ≈ 1000/100 + 1 = 11s, 5s left: retry in about 6s.
	if rej.RetryAfter < 5*time.Second || rej.RetryAfter > 7*time.Second {
		t.Fatalf("Retry-After %v, want ~6s", rej.RetryAfter)
	}
	if got := rej.Reason.HTTPStatus(); got != 429 {
		t.Fatal(got)
	}
	// A light tenant's request is scheduled ahead of the hog's backlog, so
	// the same deadline is fine for it: it queues instead of being refused.
	w := submitT(t, q, Request{Tenant: "light", Cost: 50, Deadline: clk.Now().Add(5 * time.Second)})
	if w.state != waiting {
		t.Fatal("light request not queued")
	}
}

func TestDeadlineRefusedAtOnceWhenSaturated(t *testing.T) {
	// Without fairness the light tenant waits behind the whole backlog. It
	// is within its share, so the pool is to blame: Saturated, 503.
	q, clk := deadlineQueue(t, false)
	rej := rejected(t, q, Request{Tenant: "light", Cost: 50, Deadline: clk.Now().Add(5 * time.Second)}, Saturated)
	if !strings.Contains(rej.Message, "all backends for model 'm' are saturated") {
		t.Fatalf("message %q", rej.Message)
	}
	if rej.Reason.HTTPStatus() != 503 {
		t.Fatal(rej.Reason.HTTPStatus())
	}
	// A deadline the estimate fits in queues.
	submitT(t, q, Request{Tenant: "light", Cost: 50, Deadline: clk.Now().Add(20 * time.Second)})
}

func TestDeadlineWithNoCapacityRefusedAtOnce(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(0).get, clk.Now)
	rej := rejected(t, q, Request{Deadline: clk.Now().Add(time.Hour)}, Saturated)
	if rej.RetryAfter != DefaultMaxRetryAfter {
		t.Fatalf("Retry-After %v", rej.RetryAfter)
	}
}

// The estimate follows the measured drain rate, not the prior: the same
// request that queues on a fresh pool is refused once completions show the
// pool drains twenty times slower than assumed.
func TestDeadlineUsesMeasuredDrainRate(t *testing.T) {
	scenario := func(warm bool) error {
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Fair: true, DrainSamples: 4}, newCapacity(1).get, clk.Now)
		if warm { // each request serves 100 units in 20s: 5 units per slot-second
			for range 12 {
				tk := grantedT(t, q, Request{Tenant: "a", Cost: 100})
				clk.Advance(20 * time.Second)
				tk.Release()
			}
			if rate := q.Stats().DrainRate; rate < 4.5 || rate > 5.5 {
				t.Fatalf("drain rate %.2f, want ~5 units/s", rate)
			}
		}
		grantedT(t, q, Request{Tenant: "a", Cost: 100})
		for range 3 {
			submitT(t, q, Request{Tenant: "a", Cost: 100})
		}
		_, _, err := q.submit(Request{Tenant: "b", Cost: 100, Deadline: clk.Now().Add(5 * time.Second)})
		return err
	}
	if err := scenario(false); err != nil { // prior: 100/1s + 1s hold = 2s < 5s
		t.Fatalf("refused with the prior: %v", err)
	}
	var rej *Rejection
	if err := scenario(true); !errors.As(err, &rej) || rej.Reason != Saturated {
		t.Fatalf("after slow completions: %v; want Saturated", err) // 100/5 + 20 = 40s > 5s
	}
	if rej.RetryAfter < 30*time.Second || rej.RetryAfter > 40*time.Second {
		t.Fatalf("Retry-After %v, want ~35s", rej.RetryAfter)
	}
}

// A waiter whose deadline passes while it waits is removed and refused, both
// by the queue's clock (Kick) and by its own timer.
func TestDeadlinePassesWhileWaiting(t *testing.T) {
	t.Run("clock", func(t *testing.T) {
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, clk.Now)
		held := grantedT(t, q, Request{})
		ch := acquireAsync(q, context.Background(), Request{Tenant: "w", Deadline: clk.Now().Add(time.Hour)})
		eventually(t, "queued", func() bool { return q.Stats().Queued == 1 })
		clk.Advance(2 * time.Hour)
		q.Kick()
		res := await(t, ch)
		var rej *Rejection
		if !errors.As(res.err, &rej) || rej.Reason != Deadline || rej.RetryAfter <= 0 {
			t.Fatalf("got %v, %v; want a Deadline rejection", res.t, res.err)
		}
		if s := q.Stats(); s.Queued != 0 || s.Tenants["w"].Queued != 0 || s.Rejected["deadline"] != 1 {
			t.Fatalf("%+v", s)
		}
		held.Release()
	})
	t.Run("expired head is not granted", func(t *testing.T) {
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, clk.Now)
		held := grantedT(t, q, Request{})
		late := submitT(t, q, Request{Tenant: "late", Deadline: clk.Now().Add(time.Hour)})
		next := submitT(t, q, Request{Tenant: "next"})
		clk.Advance(2 * time.Hour)
		held.Release()
		if late.state != refused || next.state != granted {
			t.Fatalf("late %v next %v", late.state, next.state)
		}
	})
	t.Run("timer", func(t *testing.T) {
		// One instant completion replaces the 1s prior hold, so the wait
		// estimate is nil and the request queues; nothing kicks the queue,
		// so only the waiter's own timer can refuse it once its deadline
		// has passed. The queue's clock is a fake one: on the wall clock a
		// loaded machine made the "instant" completion, or the way to
		// Acquire, last longer than the 20ms deadline, and the request was
		// refused at arrival (Saturated) instead of queued.
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Fair: true, DrainSamples: 1}, newCapacity(1).get, clk.Now)
		grantedT(t, q, Request{}).Release()
		held := grantedT(t, q, Request{})
		res := acquireAsync(q, context.Background(), Request{Tenant: "w", Deadline: clk.Now().Add(20 * time.Millisecond)})
		eventually(t, "the request queued", func() bool { return q.Stats().Queued == 1 })
		clk.Advance(time.Second)
		var rej *Rejection
		if err := await(t, res).err; !errors.As(err, &rej) || rej.Reason != Deadline {
			t.Fatalf("err %v; want a Deadline rejection", err)
		}
		if s := q.Stats(); s.Queued != 0 {
			t.Fatalf("%+v", s)
		}
		held.Release()
	})
}

// With QueueUnmeasured the prior's estimate does not refuse: before the
// first completion a request the prior says cannot start in time queues;
// once a completion is measured (a slow one here: 100 units in 10s, ten
// times slower than the prior), estimates refuse again.
func TestQueueUnmeasuredQueuesUntilTheFirstCompletion(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", QueueUnmeasured: true}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a", Cost: 100})
	for range 10 {
		submitT(t, q, Request{Tenant: "a", Cost: 100})
	}
	// The prior predicts ~11s of wait; 5s are left: queued all the same.
	if w := submitT(t, q, Request{Tenant: "b", Cost: 50, Deadline: clk.Now().Add(5 * time.Second)}); w.state != waiting {
		t.Fatalf("state %v, want waiting", w.state)
	}
	clk.Advance(10 * time.Second)
	held.Release()
	rejected(t, q, Request{Tenant: "c", Cost: 50, Deadline: clk.Now().Add(5 * time.Second)}, Saturated)
}

// The first completion replaces the prior instead of joining it: after one
// completion of 100 units in 10ms, the estimate is that completion's rate.
func TestFirstCompletionReplacesThePrior(t *testing.T) {
	d := newDrainEstimator(100, time.Second, 64)
	d.add(100, 10*time.Millisecond)
	if got := d.perSlot(); got != 10000 {
		t.Fatalf("per slot %v, want 10000", got)
	}
	if got := d.meanHold(); got != 0.01 {
		t.Fatalf("mean hold %v, want 0.01", got)
	}
}

// Behind one long request on a one-slot pool, the wait is how long that
// request still holds its slot (its cost at the measured rate, less the
// time it has held it), not the mean hold at every moment: a request
// arriving half a second before the slot frees queues and is granted,
// where it was refused with the whole mean hold (10 s) and a Retry-After
// that the same refusal would repeat when kept; one arriving a second
// after the long request started is refused, told the 9 s it has left.
func TestDeadlineCountsTheTimeTheRequestInServiceHasHeld(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m"}, newCapacity(1).get, clk.Now)
	warm := grantedT(t, q, Request{Tenant: "a", Cost: 10})
	clk.Advance(10 * time.Second)
	warm.Release() // measured: 1 cost unit per slot-second, a mean hold of 10 s
	long := grantedT(t, q, Request{Tenant: "a", Cost: 10})
	clk.Advance(time.Second)
	rej := rejected(t, q, Request{Tenant: "a", Cost: 1, Deadline: clk.Now().Add(3 * time.Second)}, Saturated)
	if !strings.Contains(rej.Message, "estimated wait 9s") {
		t.Errorf("message %q, want the 9 s the long request has left", rej.Message)
	}
	clk.Advance(8500 * time.Millisecond)
	w := submitT(t, q, Request{Tenant: "a", Cost: 1, Deadline: clk.Now().Add(3 * time.Second)})
	clk.Advance(500 * time.Millisecond)
	long.Release()
	if w.state != granted {
		t.Fatalf("waiter state %v after the slot freed, want granted", w.state)
	}
	w.ticket.Release()
}
