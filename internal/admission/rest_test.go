package admission

import (
	"testing"
	"time"
)

// A queue rests (a Kick would change nothing) only once nothing waits,
// the controlled delay has been reset by a Kick with a slot free and the
// ramp has forgotten its tenants; the first Acquire after Rest, and the
// first of a new queue, wakes the Kick runner.
func TestQueueRestsOnlyWhenAKickHasNothingLeft(t *testing.T) {
	clk := newFakeClock()
	wake := make(chan struct{}, 1)
	var targets [MaxClass + 1]time.Duration
	targets[Interactive] = 100 * time.Millisecond
	q := NewQueue(QueueConfig{Fair: true, Targets: targets, QueueUnmeasured: true, RampWindow: 2 * time.Second, Wake: wake}, newCapacity(1).get, clk.Now)
	woken := func() bool {
		select {
		case <-wake:
			return true
		default:
			return false
		}
	}
	if !q.Rest() {
		t.Fatal("a new queue is not at rest")
	}
	first := grantedT(t, q, Request{Tenant: "a"})
	if !woken() {
		t.Fatal("the first Acquire of a new queue sent no wake")
	}
	w := submitT(t, q, Request{Tenant: "a"})
	clk.Advance(150 * time.Millisecond)
	q.Kick() // the waiter is past the target: the class counts toward congestion
	if q.classes[Interactive].delay.firstAbove.IsZero() {
		t.Fatal("setup: the class's delay is not above its target")
	}
	first.Release() // grants w, unless the Kick refused it
	if w.state == granted {
		w.ticket.Release()
	}
	if woken() {
		t.Fatal("a wake without an Acquire")
	}
	clk.Advance(3 * time.Second) // past RampWindow
	if q.Rest() {
		t.Fatal("at rest with the class's delay above target and tenant a remembered: a Kick would reset and forget them")
	}
	q.Kick()
	if !q.Rest() {
		t.Fatal("not at rest after a Kick with nothing queued")
	}
	grantedT(t, q, Request{Tenant: "b"}).Release()
	if !woken() {
		t.Fatal("the first Acquire after Rest sent no wake")
	}
	if q.Rest() {
		t.Fatal("at rest while tenant b is remembered by the ramp")
	}
}
