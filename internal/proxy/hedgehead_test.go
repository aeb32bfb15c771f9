package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// The hedge timer runs from the send: a backend that accepts a stream and
// never answers its head is hedged like one whose first token is late.

// TestHedgeRacesHungHeadWhenIdle: with the pool idle, a first attempt with
// no response head by the hedge delay is hedged to the other backend,
// whose stream the client gets. The hung attempt runs on in the spare slot
// past the request's end (a stalled wait routing sees, and its own timeout
// would be a failure) until a live request takes the slot back: then it
// is released, its connection cancelled, its backend slot, the spare slot
// and the hedge budget given back, no failure charged, and its wait
// learned as a lower bound of its backend's latency.
func TestHedgeRacesHungHeadWhenIdle(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
	r.slowMode = slowNoHead
	body, res := r.answer(r.send(500 * time.Millisecond))
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast || res.Err != nil {
		t.Fatalf("body %q hedge %d backend %v err %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend, res.Err)
	}
	if !<-r.slotAsked {
		t.Fatal("the idle queue refused the hedge a spare slot")
	}
	if r.slow.Inflight() != 1 {
		t.Fatalf("hung backend in flight %d after the request; want its attempt running on", r.slow.Inflight())
	}
	live, err := r.queue.Acquire(context.Background(), admission.Request{Tenant: "a"})
	if err != nil {
		t.Fatalf("the live request was not granted the running-on attempt's slot: %v", err)
	}
	<-r.slowGone // taking the slot back cancelled the hung attempt
	waitUntil(t, "the hung attempt to be released", func() bool {
		return r.slow.Inflight() == 0 && r.budget.InFlight() == 0
	})
	live.Release()
	if s := r.queue.Stats(); s.InUse != 0 {
		t.Fatalf("queue slots in use %d; want the spare slot given back", s.InUse)
	}
	now := r.clock.Now()
	if got := r.slow.Latency(now); got < 500*time.Millisecond {
		t.Fatalf("hung backend's latency estimate %v; want at least its 500ms wait", got)
	}
	if r.slow.Failures() != 0 || r.slow.Stalled(now) != 0 || r.fast.Inflight() != 0 {
		t.Fatalf("hung backend failures %d stalled %v, fast in flight %d; want a withdrawn attempt and every slot ended",
			r.slow.Failures(), r.slow.Stalled(now), r.fast.Inflight())
	}
	// The withdrawn wait takes its KV need with it (branch kvneed).
	for _, b := range []*endpoint.Backend{r.slow, r.fast} {
		if streams, kv := b.WaitingStreams(); streams != 0 || kv != 0 {
			t.Fatalf("%s: %d streams of KV need %d still waiting; want none", b.Name(), streams, kv)
		}
	}
}

// TestHedgingKeepsRetryBeforeFirstByte: a first attempt answered 503
// before the hedge delay ends the race at once; Forward retries it on the
// next backend as without hedging (a retry, not a hedge), and the busy
// backend is charged busy, not a failure.
func TestHedgingKeepsRetryBeforeFirstByte(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 8)
	r.slowMode = slowBusy
	body, res := r.answer(r.post())
	if body != sseAnswer || res.Hedge != HedgeNone || res.Backend != r.fast || res.Attempts != 2 || res.Retries != 1 {
		t.Fatalf("body %q hedge %d backend %v attempts %d retries %d; want the fast backend's stream by one retry, no hedge",
			body, res.Hedge, res.Backend, res.Attempts, res.Retries)
	}
	if len(r.slotAsked) != 0 || r.slow.Failures() != 0 {
		t.Fatalf("spare slots asked %d, busy backend failures %d; want neither", len(r.slotAsked), r.slow.Failures())
	}
	waitUntil(t, "both attempts to end", func() bool { return r.slow.Inflight() == 0 && r.fast.Inflight() == 0 })
}

// TestHedgeLoserCancelledAtShutdown: a hung first attempt that lost the
// race runs on past its request, on a goroutine of the Forwarder's Owner;
// when the owner stops waiting (shutdown's grace is over) the attempt is
// cancelled and its goroutine returns: its connection is closed, its
// backend slot, the spare slot and the hedge budget given back, and no
// failure charged (shutdown is not the backend's fault).
func TestHedgeLoserCancelledAtShutdown(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
	r.slowMode = slowNoHead
	body, res := r.answer(r.send(500 * time.Millisecond))
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast {
		t.Fatalf("body %q hedge %d backend %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend)
	}
	if r.slow.Inflight() != 1 {
		t.Fatalf("hung backend in flight %d after the request; want its attempt running on", r.slow.Inflight())
	}
	r.owner.shutdown() // returns once the loser's goroutine has ended
	if r.slow.Inflight() != 0 || r.budget.InFlight() != 0 || r.queue.Stats().InUse != 0 {
		t.Fatalf("after shutdown: hung backend in flight %d, hedges %d, queue slots %d; want all given back",
			r.slow.Inflight(), r.budget.InFlight(), r.queue.Stats().InUse)
	}
	if f := r.slow.Failures(); f != 0 {
		t.Fatalf("hung backend failures %d; want none for a cut at shutdown", f)
	}
	<-r.slowGone // the cancel reached the backend
}

// TestHedgeLoserWhoseHeadComesLateEndsWithItsRequest: a first attempt
// still headless when the race ends runs on past its request; if its head
// comes after all (here: once the request has ended), it is an attempt
// with a head, which runs on only while its request does: it is cancelled
// then, not left running to its first-token bound (a minute here).
func TestHedgeLoserWhoseHeadComesLateEndsWithItsRequest(t *testing.T) {
	r := newHedgeRig(t, NewHedgeBudget(0.1, 1), 1)
	r.slowMode = slowLateHead
	body, res := r.answer(r.send(500 * time.Millisecond))
	if body != sseAnswer || res.Hedge != HedgeWon || res.Backend != r.fast {
		t.Fatalf("body %q hedge %d backend %v; want the fast backend's stream by a hedge", body, res.Hedge, res.Backend)
	}
	if r.slow.Inflight() != 1 {
		t.Fatalf("hung backend in flight %d after the request; want its headless attempt running on", r.slow.Inflight())
	}
	close(r.lateHead) // the head comes after the request has ended
	waitUntil(t, "the attempt with a head to be cancelled with its ended request", func() bool {
		select {
		case <-r.slowGone:
			return true
		default:
			return false
		}
	})
	waitUntil(t, "the attempt to be ended", func() bool {
		return r.slow.Inflight() == 0 && r.budget.InFlight() == 0 && r.queue.Stats().InUse == 0
	})
	if f := r.slow.Failures(); f != 0 {
		t.Fatalf("late backend failures %d; want none for a cut with its request", f)
	}
}
