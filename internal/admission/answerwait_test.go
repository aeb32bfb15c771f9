package admission

import (
	"testing"
	"time"
)

// A request whose client waits for its whole answer (Slack) is bounded by
// its class's delay target plus Slack: past five waiters (0.6s estimated,
// target 0.5s) it queues where a stream is refused at once; its wait
// within Slack does not congest the class; but once the streams' waits
// congest it, its slack is gone: shed at the class's target like a
// stream.
func TestSlackLengthensTheDelayTarget(t *testing.T) {
	q, clk, _ := codelQueue(t)
	deadline := clk.Now().Add(5 * time.Second)
	for range 5 {
		submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline})
	}
	if _, _, err := q.submit(Request{Tenant: "a", Cost: 100, Deadline: deadline}); err == nil {
		t.Fatal("a stream estimated at 0.6s, target 0.5s: queued, want refused at once")
	}
	answer := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: deadline, Slack: 3 * time.Second})
	if answer.state != waiting {
		t.Fatalf("an answer of 3s slack estimated at 0.6s: %v, want queued", answer.err)
	}
	for range 2 { // 1s: past the class's target, within the slack
		clk.Advance(500 * time.Millisecond)
		q.Kick()
	}
	if answer.state != waiting {
		t.Fatalf("an answer within its slack: %v, want still waiting", answer.err)
	}
	// The streams' waits congest the class: the slack was the room they
	// left, and the answer is shed at the class's target like them.
	for range 2 {
		clk.Advance(500 * time.Millisecond)
		q.Kick()
	}
	if !congested(q, Interactive) {
		t.Fatal("not congested after the streams waited past the target for an interval")
	}
	if answer.state != refused {
		t.Fatal("an answer past the class's target while streams miss it: still waiting, want shed")
	}
}

// Within its Slack, a waiter's wait does not congest its class (the
// streams of its class and tenant would be shed for it); past it, it does.
func TestWaitWithinSlackDoesNotCongest(t *testing.T) {
	q, clk, _ := codelQueue(t)
	w := submitT(t, q, Request{Tenant: "a", Cost: 100, Deadline: clk.Now().Add(9 * time.Second), Slack: 4 * time.Second})
	for range 6 { // 3s: six times the target, within the slack
		clk.Advance(500 * time.Millisecond)
		q.Kick()
	}
	if congested(q, Interactive) {
		t.Fatal("congested by a wait within the waiter's slack")
	}
	for range 7 { // 6.5s: a whole interval above the target past the slack
		clk.Advance(500 * time.Millisecond)
		q.Kick()
	}
	if !congested(q, Interactive) {
		t.Fatal("not congested by a wait past the waiter's slack by more than the target for an interval")
	}
	if w.state != waiting {
		t.Fatalf("an answer kept at its target review (at the head): %v; want waiting until its deadline", w.err)
	}
}
