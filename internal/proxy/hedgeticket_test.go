package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// TestPreemptedHedgeFreesBackendBeforeTicket: a live request that takes a
// hedge's spare slot back is granted only once the hedge's backend slot is
// free too, while the first attempt (still without its first token) keeps
// the race open. Before, the ticket went at once and the backend slot only
// at the race's end: the request granted found the backend full (a 503
// pool_saturated in the gateway), one call in flight without a ticket.
func TestPreemptedHedgeFreesBackendBeforeTicket(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 2)
	// The first attempt's own admission ticket, as the gateway holds it.
	own, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	defer close(hold)
	r.fastHold, r.fastGot = hold, make(chan struct{})
	answers := r.send(500 * time.Millisecond)
	if !<-r.slotAsked {
		t.Fatal("the idle queue refused the hedge a spare slot")
	}
	<-r.fastGot
	if got := r.slow.Inflight() + r.fast.Inflight(); got != 2 {
		t.Fatalf("%d calls in flight; want the first attempt and its hedge", got)
	}
	live, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "b"})
	if err != nil {
		t.Fatalf("the live request was not granted the hedge's slot: %v", err)
	}
	// Two tickets held (own, live): at most two calls may be in flight,
	// and the preempted hedge's must already be over.
	if n := r.fast.Inflight(); n != 0 {
		t.Fatalf("the preempted hedge still holds %d backend slot(s) after its ticket was granted on", n)
	}
	if got := r.slow.Inflight() + r.fast.Inflight(); got > 2 {
		t.Fatalf("%d calls in flight on 2 tickets", got)
	}
	close(r.releaseSlow)
	body, res := r.answer(answers)
	live.Release()
	own.Release()
	if body != sseAnswer || res.Hedge != HedgeLost || res.Backend != r.slow {
		t.Fatalf("body %q hedge %d backend %v; want the first attempt's stream", body, res.Hedge, res.Backend)
	}
	if r.fast.Failures() != 0 {
		t.Fatalf("the preempted hedge's backend got %d failures", r.fast.Failures())
	}
}
