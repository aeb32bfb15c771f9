package admission

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// With the prior (100 cost units per slot-second, 1s mean hold) and 10
// slots, the estimated wait behind ahead units of queued cost is
// 0.1s + ahead/1000 s: each queued request of cost 100 adds 100ms.
func codelQueue(t *testing.T) (*Queue, *fakeClock, []*Ticket) {
	t.Helper()
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets}, newCapacity(10).get, clk.Now)
	var held []*Ticket
	for range 10 {
		held = append(held, grantedT(t, q, Request{Tenant: "busy", Cost: 100}))
	}
	return q, clk, held
}

func refusedWith(t *testing.T, w *waiter, want Reason) *Rejection {
	t.Helper()
	if w.state != refused {
		t.Fatalf("waiter state %v, want refused (%v)", w.state, want)
	}
	var rej *Rejection
	if !errors.As(w.err, &rej) || rej.Reason != want {
		t.Fatalf("refused with %v, want %v", w.err, want)
	}
	if rej.RetryAfter <= 0 {
		t.Fatalf("Retry-After %v", rej.RetryAfter)
	}
	return rej
}

func congested(q *Queue, c Class) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.classes[c].delay.congested
}

// A burst (waits above the target for less than the interval) is absorbed:
// requests that can start before their deadline wait past the target.
func TestDelayTargetBurstIsAbsorbed(t *testing.T) {
	q, clk, _ := codelQueue(t)
	deadline := clk.Now().Add(2 * time.Second)
	var ws []*waiter
	for range 5 {
		ws = append(ws, submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline}))
	}
	clk.Advance(600 * time.Millisecond)
	q.Kick()
	if congested(q, Interactive) {
		t.Fatal("congested after one observation above target")
	}
	for i, w := range ws {
		if w.state != waiting {
			t.Fatalf("waiter %d state %v: a burst within its deadline must wait", i, w.state)
		}
	}
}

// Waits above the target for a whole interval make the class congested:
// waiters at the target are shed, arrivals that would wait past it are
// refused at once, and those that fit still queue.
func TestDelayTargetCongestionShedsAndRefuses(t *testing.T) {
	q, clk, _ := codelQueue(t)
	deadline := func() time.Time { return clk.Now().Add(2 * time.Second) }
	old := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline()})
	clk.Advance(600 * time.Millisecond)
	q.Kick() // above target: the interval (1s) starts
	old2 := submitT(t, q, Request{Tenant: "b", Cost: 100, Deadline: deadline()})
	clk.Advance(time.Second)
	q.Kick() // above target for the whole interval
	if !congested(q, Interactive) {
		t.Fatal("not congested after an interval above target")
	}
	rej := refusedWith(t, old, Shed)
	if rej.Waited != 1600*time.Millisecond || rej.Reason.HTTPStatus() != 503 {
		t.Fatalf("shed after %v with status %d", rej.Waited, rej.Reason.HTTPStatus())
	}
	if !strings.Contains(rej.Message, "overloaded") {
		t.Fatalf("message %q", rej.Message)
	}
	refusedWith(t, old2, Shed)

	// Five waiters fit under the target (0.1s + 0.1s for each ahead)...
	var fit []*waiter
	for range 5 {
		fit = append(fit, submitT(t, q, Request{Tenant: "c", Cost: 100, Deadline: deadline()}))
	}
	// ...the next would wait 0.6s: refused at arrival, though its own
	// deadline (2s) is far.
	_, _, err := q.submit(Request{Tenant: "c", Cost: 100, Deadline: deadline()})
	var r *Rejection
	if !errors.As(err, &r) || r.Reason != Saturated || r.Waited != 0 {
		t.Fatalf("arrival past the target: %v", err)
	}
	if !strings.Contains(r.Message, "overloaded queue allows") {
		t.Fatalf("message %q", r.Message)
	}
	for _, w := range fit {
		if w.state != waiting {
			t.Fatal("a waiter under the target was refused")
		}
	}
}

// While congested, a freed slot goes to the first waiter still under the
// target: those past it are shed from the head, not served late.
func TestDelayTargetShedsFromTheHead(t *testing.T) {
	q, clk, held := codelQueue(t)
	first := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(600 * time.Millisecond)
	q.Kick()
	clk.Advance(time.Second)
	q.mu.Lock()
	q.classes[Interactive].delay.observe(clk.Now(), 1600*time.Millisecond) // congested, first still queued
	q.mu.Unlock()
	second := submitT(t, q, Request{Tenant: "a", Cost: 100})
	held[0].Release()
	refusedWith(t, first, Shed)
	if second.state != granted {
		t.Fatalf("second state %v, want granted", second.state)
	}
	// second waited 0, under half the target: the overload is over.
	if congested(q, Interactive) {
		t.Fatal("still congested after a grant with no wait")
	}
}

// Congestion ends when the class drains: nobody waiting and a slot free.
func TestDelayTargetCongestionEnds(t *testing.T) {
	q, clk, held := codelQueue(t)
	w := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(600 * time.Millisecond)
	q.Kick()
	clk.Advance(time.Second)
	q.Kick()
	refusedWith(t, w, Shed)
	if !congested(q, Interactive) {
		t.Fatal("shedding alone must not end congestion: the pool is still full")
	}
	held[0].Release()
	q.Kick()
	if congested(q, Interactive) {
		t.Fatal("still congested with nobody waiting and a slot free")
	}
}

// Not congested, a waiter reaching the target whose re-estimated wait no
// longer fits before its deadline is refused then, not at its deadline.
func TestDelayTargetReviewRefusesEarly(t *testing.T) {
	q, clk, _ := codelQueue(t)
	// Ten waiters of another tenant ahead: 1.1s of estimated wait for a
	// request behind them, which fits a 1.2s deadline at arrival...
	for range 10 {
		submitT(t, q, Request{Tenant: "a", Cost: 100})
	}
	w := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: clk.Now().Add(1200 * time.Millisecond)})
	// ...but after 500ms nothing has moved: 1.1s still ahead, 0.7s left.
	clk.Advance(500 * time.Millisecond)
	q.Kick()
	rej := refusedWith(t, w, Deadline)
	if rej.Waited != 500*time.Millisecond {
		t.Fatalf("refused after %v, want at the 500ms target", rej.Waited)
	}
	if congested(q, Interactive) {
		t.Fatal("one observation above target made the class congested")
	}
}

// No target, no controlled delay: only the deadline bounds a wait.
func TestDelayTargetOffByDefault(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(1).get, clk.Now)
	grantedT(t, q, Request{Tenant: "x"})
	w := submitT(t, q, Request{Tenant: "a"})
	for range 10 {
		clk.Advance(time.Second)
		q.Kick()
	}
	if w.state != waiting {
		t.Fatalf("state %v: without a target or deadline a waiter waits", w.state)
	}
}
