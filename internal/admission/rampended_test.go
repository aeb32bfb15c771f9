package admission

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// nonStreams submits n requests of tenant that do not stream and returns
// those granted at once and the waiters.
func nonStreams(t *testing.T, q *Queue, clk *fakeClock, tenant string, n int) (granted []*Ticket, waiting []*waiter) {
	t.Helper()
	for range n {
		tk, w, err := q.submit(Request{Tenant: tenant, Cost: 100, Deadline: clk.Now().Add(2 * time.Minute)})
		switch {
		case err != nil:
			t.Fatal(err)
		case tk != nil:
			granted = append(granted, tk)
		default:
			waiting = append(waiting, w)
		}
	}
	return granted, waiting
}

// A request that does not stream is a completion of its tenant's ramp only
// when its ticket is told it ended in success (Ticket.Ended): a newcomer
// whose requests the backend answered 500 showed no slot the engines
// serve, and its allowance stays. Every release counted before: B's three
// 500s grew its allowance from 1 to 4, as three answers would.
func TestRampNonStreamCompletionNeedsSuccess(t *testing.T) {
	q, clk := rampQueue(16, 2*time.Second)
	steadyHolding(t, q, clk, 4) // peak 4, margin 2: no probe goes
	first := grantedT(t, q, Request{Tenant: "B", Cost: 100})
	for range 3 { // answered 500
		clk.Advance(20 * time.Millisecond)
		first.Ended(outcome.Failure)
		first.Release()
		first = grantedT(t, q, Request{Tenant: "B", Cost: 100})
	}
	// Told nothing (a client gone before the proxy ended it): no answer.
	clk.Advance(20 * time.Millisecond)
	first.Release()
	first = grantedT(t, q, Request{Tenant: "B", Cost: 100})
	clk.Advance(20 * time.Millisecond)
	if got, _ := nonStreams(t, q, clk, "B", 3); len(got) != 0 {
		t.Fatalf("%d of B's next three granted after three 500s and a cancel; want none: its allowance (1) held, no answer came back", len(got))
	}
	// A 2xx answer is a completion: its allowance grows by one.
	first.Ended(outcome.Success)
	clk.Advance(20 * time.Millisecond)
	first.Release()
	if s := q.Stats(); s.Tenants["B"].InUse != 2 {
		t.Fatalf("B holds %d after a successful answer; want 2 (its allowance grown by one, a held request granted)", s.Tenants["B"].InUse)
	}
}

// Ended on a nil ticket (admission off) does nothing.
func TestTicketEndedNil(t *testing.T) {
	var tk *Ticket
	tk.Ended(outcome.Success)
}
