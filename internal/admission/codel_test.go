package admission

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Tenant "a" holds the 10 slots and waits in the tests below: it is the
// tenant whose own work congests the pool, not light (flowdelay.go), so the
// controlled delay applies to it whole (flowdelay.go; a tenant under its
// share is exempt). With the prior (100 cost units per slot-second, 1s mean
// hold) and 10 slots, the estimated wait behind ahead units of queued cost is
// 0.1s + ahead/1000 s: each queued request of cost 100 adds 100ms.
func codelQueue(t *testing.T) (*Queue, *fakeClock, []*Ticket) {
	t.Helper()
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets}, newCapacity(10).get, clk.Now)
	var held []*Ticket
	for range 10 {
		held = append(held, grantedT(t, q, Request{Tenant: "a", Cost: 100}))
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
	return q.classes[c].congested()
}

// The target bounds every wait of a tenant that is not light, congested
// or not: an arrival estimated past it is refused at once however far its
// deadline, and those that fit under it queue.
func TestDelayTargetBoundsArrivals(t *testing.T) {
	q, clk, _ := codelQueue(t)
	deadline := clk.Now().Add(5 * time.Second)
	var ws []*waiter
	for range 5 { // estimated 0.1s, 0.2s, ... 0.5s
		ws = append(ws, submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline}))
	}
	_, _, err := q.submit(Request{Tenant: "a", Cost: 100, Deadline: deadline})
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Reason != Saturated || rej.Waited != 0 {
		t.Fatalf("arrival estimated at 0.6s, target 0.5s, deadline 5s: %v, want refused at once", err)
	}
	if !strings.Contains(rej.Message, "500ms delay target") {
		t.Fatalf("message %q", rej.Message)
	}
	if congested(q, Interactive) {
		t.Fatal("congested without a wait above the target")
	}
	for i, w := range ws {
		if w.state != waiting {
			t.Fatalf("waiter %d state %v: a wait estimated under the target must queue", i, w.state)
		}
	}
}

// congest makes the interactive class congested: a waiter stays above the
// target for a whole interval. That waiter was kept at its own target
// review (not congested then), so it stays queued, committed.
func congest(t *testing.T, q *Queue, clk *fakeClock) *waiter {
	t.Helper()
	old := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: clk.Now().Add(5 * time.Second)})
	clk.Advance(600 * time.Millisecond)
	q.Kick() // above target: the interval (1s) starts; old is reviewed and kept
	clk.Advance(time.Second)
	q.Kick() // above target for the whole interval
	if !congested(q, Interactive) {
		t.Fatal("not congested after an interval above target")
	}
	if old.state != waiting {
		t.Fatalf("a waiter kept at its target review was refused later (%v)", old.err)
	}
	return old
}

// Congested, a waiter reaching the target is shed then (not later), arrivals
// that would wait past the target are refused at once, and those that fit
// still queue.
func TestDelayTargetCongestionShedsAndRefuses(t *testing.T) {
	q, clk, _ := codelQueue(t)
	congest(t, q, clk)
	deadline := func() time.Time { return clk.Now().Add(2 * time.Second) }
	w := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline()})
	clk.Advance(500 * time.Millisecond)
	q.Kick()
	rej := refusedWith(t, w, Shed)
	if rej.Waited != 500*time.Millisecond || rej.Reason.HTTPStatus() != 503 {
		t.Fatalf("shed after %v with status %d, want at the 500ms target, 503", rej.Waited, rej.Reason.HTTPStatus())
	}
	if !strings.Contains(rej.Message, "overloaded") {
		t.Fatalf("message %q", rej.Message)
	}

	// With the committed waiter ahead (0.1s), four more fit under the
	// target (0.1s + 0.1s for each ahead)...
	var fit []*waiter
	for range 4 {
		fit = append(fit, submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline()}))
	}
	// ...the next would wait 0.6s: refused at arrival, though its own
	// deadline (2s) is far.
	_, _, err := q.submit(Request{Tenant: "a", Cost: 100, Deadline: deadline()})
	var r *Rejection
	if !errors.As(err, &r) || r.Reason != Saturated || r.Waited != 0 {
		t.Fatalf("arrival past the target: %v", err)
	}
	if !strings.Contains(r.Message, "delay target") {
		t.Fatalf("message %q", r.Message)
	}
	for _, w := range fit {
		if w.state != waiting {
			t.Fatal("a waiter under the target was refused")
		}
	}
}

// While congested, a freed slot goes to a committed waiter or to the first
// one still under the target: those that reached it are shed from the
// head, not served late.
func TestDelayTargetShedsFromTheHead(t *testing.T) {
	q, clk, held := codelQueue(t)
	old := congest(t, q, clk)
	late := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(300 * time.Millisecond)
	fresh := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(200 * time.Millisecond) // late is at the target; no Kick, no timer
	held[0].Release()
	if old.state != granted {
		t.Fatalf("committed waiter state %v, want granted", old.state)
	}
	held[1].Release()
	refusedWith(t, late, Shed)
	if fresh.state != granted {
		t.Fatalf("fresh waiter state %v, want granted", fresh.state)
	}
}

// Congestion ends when the class drains: nobody waiting and a slot free.
func TestDelayTargetCongestionEnds(t *testing.T) {
	q, clk, held := codelQueue(t)
	congest(t, q, clk)
	held[0].Release() // the committed waiter takes it
	w := submitT(t, q, Request{Tenant: "a", Cost: 100})
	clk.Advance(500 * time.Millisecond)
	q.Kick()
	refusedWith(t, w, Shed)
	if !congested(q, Interactive) {
		t.Fatal("shedding alone must not end congestion: the pool is still full")
	}
	held[1].Release()
	q.Kick()
	if congested(q, Interactive) {
		t.Fatal("still congested with nobody waiting and a slot free")
	}
}

// A waiter that cannot start within the target is refused at its target
// review, though its deadline and Latest are far: refusals after queueing
// come at the target, never at the latest useful moment. One about to
// start (nothing ahead of it) is kept, and granted at the next release.
func TestDelayTargetReviewRefusesWhatCannotStartInTime(t *testing.T) {
	q, clk, held := codelQueue(t)
	start := clk.Now()
	far := func(d time.Duration) Request {
		return Request{Tenant: "a", Cost: 100, Deadline: start.Add(d), Latest: start.Add(d + time.Second)}
	}
	head := submitT(t, q, far(2*time.Second)) // estimated 0.1s
	w := submitT(t, q, far(2*time.Second))    // estimated 0.2s: fits the target at arrival
	tail := submitT(t, q, far(2*time.Second)) // estimated 0.3s
	clk.Advance(500 * time.Millisecond)       // no slot freed meanwhile
	q.Kick()
	if head.state != waiting {
		t.Fatalf("head state %v (%v): a waiter about to start is kept", head.state, head.err)
	}
	for _, x := range []*waiter{w, tail} {
		rej := refusedWith(t, x, Shed)
		if rej.Waited != 500*time.Millisecond {
			t.Fatalf("refused after %v, want at the 500ms target", rej.Waited)
		}
	}
	if congested(q, Interactive) {
		t.Fatal("one observation above target made the class congested")
	}
	held[0].Release()
	if head.state != granted {
		t.Fatalf("kept waiter %v after a release, want granted", head.state)
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

// A blocked Acquire is reviewed by its own timer at the target, with no
// Kick: refusals after queueing come at the target even when nothing else
// happens in the queue. The queue's clock is a fake one that the test moves
// to each waiter's target once the waiter is queued; the timer is real, so
// the waiter's own goroutine is what notices. (On the wall clock, a loaded
// machine let the class turn congested before a queued waiter reached its
// target, and the next arrival was refused at once: the test waited for a
// review that could not come. And a waiter shed at its review was taken
// for a kept one when its refusal had not reached Acquire's caller yet.)
func TestDelayTargetTimerShedsWithoutKick(t *testing.T) {
	const target = 10 * time.Millisecond
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = target
	clk := newFakeClock()
	// QueueUnmeasured: the prior's 1s wait would refuse every arrival
	// past the 10ms target; this test is about the review.
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets, QueueUnmeasured: true}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "busy"})
	defer held.Release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pending []<-chan result
	defer func() {
		cancel()
		for _, ch := range pending {
			await(t, ch)
		}
	}()
	sheds := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return int(q.counters.rejected[Shed])
	}
	reviewed := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return int(q.counters.rejected[Shed]) + countReviewed(q)
	}
	for i := 0; i < 200; i++ {
		before, shedBefore, queued := reviewed(), sheds(), q.Stats().Queued
		ch := acquireAsync(q, ctx, Request{Tenant: "a"})
		var early *result
		eventually(t, "the new waiter queued", func() bool {
			select {
			case r := <-ch:
				early = &r
				return true
			default:
				return q.Stats().Queued > queued
			}
		})
		if early != nil {
			t.Fatalf("waiter %d refused at arrival: %v", i, early.err)
		}
		clk.Advance(target)
		eventually(t, "the new waiter is reviewed at its target", func() bool { return reviewed() > before })
		// The queue's count says which way the review went; the refusal
		// reaches Acquire's caller a moment later.
		if sheds() == shedBefore {
			pending = append(pending, ch) // kept: committed
			continue
		}
		var rej *Rejection
		if err := await(t, ch).err; !errors.As(err, &rej) || rej.Reason != Shed {
			t.Fatalf("got %v, want shed", err)
		}
		if rej.Waited != target {
			t.Fatalf("shed after %v, not at the target %v", rej.Waited, target)
		}
		if want := "estimated to drain in " + waitText(rej.RetryAfter); !strings.Contains(rej.Message, want) {
			t.Fatalf("shed message %q does not state its Retry-After %v (%q)", rej.Message, rej.RetryAfter, want)
		}
		return
	}
	t.Fatal("never shed")
}

func countReviewed(q *Queue) int {
	n := 0
	for _, f := range q.classes[Interactive].active {
		for _, w := range f.waiters {
			if w.reviewed {
				n++
			}
		}
	}
	return n
}

// A waiter kept at its target review is refused at Latest, not at its
// Deadline: the deadline's margin was for the arrival estimate's error.
func TestDelayTargetKeptWaiterRefusedAtLatest(t *testing.T) {
	q, clk, _ := codelQueue(t)
	start := clk.Now()
	w := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: start.Add(time.Second), Latest: start.Add(1500 * time.Millisecond)})
	clk.Advance(500 * time.Millisecond)
	q.Kick() // reviewed at the target: 0.1s left to wait, 0.5s to its deadline: kept
	clk.Advance(700 * time.Millisecond)
	q.Kick() // past its deadline, before Latest
	if w.state != waiting {
		t.Fatalf("state %v: a kept waiter must wait until Latest", w.state)
	}
	clk.Advance(301 * time.Millisecond)
	q.Kick()
	rej := refusedWith(t, w, Deadline)
	if rej.Waited != 1501*time.Millisecond {
		t.Fatalf("refused after %v", rej.Waited)
	}
}

// Before the first completion is measured a cold burst queues (QueueUnmeasured)
// and is shed at its target; a shed request is told the time the work the
// pool will serve takes to drain, about the target, not the whole queue's
// at the prior rate (every waiter of which is shed at its target too):
// that told the first seconds of a 400 req/s burst 46-62 s while the pool
// served the next request seconds later.
func TestColdBurstShedIsToldTheTargetsDrain(t *testing.T) {
	clk := newFakeClock()
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 500 * time.Millisecond
	q := NewQueue(QueueConfig{Name: "m", Fair: true, Targets: targets, QueueUnmeasured: true}, newCapacity(4).get, clk.Now)
	for range 4 {
		grantedT(t, q, Request{Tenant: "a", Cost: 800})
	}
	var queued []*waiter
	for range 200 {
		queued = append(queued, submitT(t, q, Request{Tenant: "a", Cost: 800}))
	}
	clk.Advance(targets[Interactive])
	q.Kick()
	rej := refusedWith(t, queued[1], Shed) // the head is about to start: kept
	// 199 × 800 units at the prior's 100 per slot-second on 4 slots: 400 s.
	if rej.RetryAfter > 2*time.Second {
		t.Fatalf("shed at the target of a cold burst: Retry-After %v (%s); want about the target's drain, a second or two", rej.RetryAfter, rej.Message)
	}
	if want := "estimated to drain in " + waitText(rej.RetryAfter); !strings.Contains(rej.Message, want) {
		t.Fatalf("shed message %q does not state its Retry-After %v", rej.Message, rej.RetryAfter)
	}
}
