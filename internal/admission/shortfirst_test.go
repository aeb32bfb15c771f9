package admission

import (
	"testing"
	"time"
)

// grantOrder releases the held ticket and then each granted one in turn,
// returning the waiters in the order the queue granted them.
func grantOrder(t *testing.T, q *Queue, held *Ticket, ws ...*waiter) []*waiter {
	t.Helper()
	var order []*waiter
	next := held
	for len(order) < len(ws) {
		next.Release()
		var got *waiter
		for _, w := range ws {
			if w.state == granted && !contains(order, w) {
				got = w
			}
		}
		if got == nil {
			t.Fatalf("nothing granted after %d", len(order))
		}
		order = append(order, got)
		next = got.ticket
	}
	next.Release()
	return order
}

func contains(ws []*waiter, w *waiter) bool {
	for _, o := range ws {
		if o == w {
			return true
		}
	}
	return false
}

func TestShortFirstWithinATenant(t *testing.T) {
	for _, tc := range []struct {
		name           string
		shortFirst     time.Duration
		gap            time.Duration // between the long and the short arrival
		wantShortFirst bool
	}{
		{"off: FIFO", 0, 0, false},
		{"on: the short one goes ahead", time.Second, 100 * time.Millisecond, true},
		{"on, but the long one waited its bound", time.Second, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			q := NewQueue(QueueConfig{Fair: true, ShortFirst: tc.shortFirst}, newCapacity(1).get, clk.Now)
			held := grantedT(t, q, Request{Tenant: "a"})
			long := submitT(t, q, Request{Tenant: "a", Cost: 1000})
			clk.Advance(tc.gap)
			short := submitT(t, q, Request{Tenant: "a", Cost: 10})
			order := grantOrder(t, q, held, long, short)
			if (order[0] == short) != tc.wantShortFirst {
				t.Fatalf("short granted first = %v, want %v", order[0] == short, tc.wantShortFirst)
			}
		})
	}
}

// Re-ordering a tenant's own waiters deals its tags anew without adding
// to them: another tenant's place is what it is without size-aware order.
func TestShortFirstLeavesOtherTenantsShareAlone(t *testing.T) {
	place := func(shortFirst time.Duration) (bFinish float64, order []string) {
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Fair: true, ShortFirst: shortFirst}, newCapacity(1).get, clk.Now)
		held := grantedT(t, q, Request{Tenant: "a"})
		aLong := submitT(t, q, Request{Tenant: "a", Cost: 1000})
		aShort := submitT(t, q, Request{Tenant: "a", Cost: 10})
		b := submitT(t, q, Request{Tenant: "b", Cost: 500})
		names := map[*waiter]string{aLong: "a-long", aShort: "a-short", b: "b"}
		bFinish = b.finish
		for _, w := range grantOrder(t, q, held, aLong, aShort, b) {
			order = append(order, names[w])
		}
		return bFinish, order
	}
	offB, offOrder := place(0)
	onB, onOrder := place(time.Second)
	if offB != onB {
		t.Fatalf("b's finish tag %v with size-aware order, %v without", onB, offB)
	}
	if want := []string{"b", "a-long", "a-short"}; !equalStrings(offOrder, want) {
		t.Fatalf("off: %v, want %v", offOrder, want)
	}
	if want := []string{"a-short", "b", "a-long"}; !equalStrings(onOrder, want) {
		t.Fatalf("on: %v, want %v", onOrder, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The arrival estimate counts only the tenant's waiters the request goes
// behind.
func TestShortFirstEstimateCountsOnlyWhatIsAhead(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, ShortFirst: time.Second}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	defer held.Release()
	submitT(t, q, Request{Tenant: "a", Cost: 5000})
	// 5000 of cost ahead at the prior's 100/s would be 50 s: too long for a
	// 10 s deadline unless the short request goes ahead of it.
	submitT(t, q, Request{Tenant: "a", Cost: 10, Deadline: clk.Now().Add(10 * time.Second)})
}
