package admission

import (
	"testing"
	"time"
)

// An opened queue (admission turned off by a reload) grants its waiters
// at once, those held by their tenant's ramp too, and every later
// request, whatever the capacity; the tickets still return. Before Open
// they were granted only as tickets came back.
func TestOpenGrantsEveryWaiterAtOnce(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true, RampWindow: time.Minute}, newCapacity(1).get, clk.Now)
	held := grantedT(t, q, Request{Tenant: "a"})
	waiters := []*waiter{submitT(t, q, Request{Tenant: "a"}), submitT(t, q, Request{Tenant: "b", Class: Batch}),
		submitT(t, q, Request{Tenant: "c"})}
	clk.Advance(time.Second)
	q.Open()
	for _, w := range waiters {
		if w.state != granted {
			t.Fatalf("waiter %d (tenant %s) %v after Open; want granted at once", w.seq, w.req.Tenant, w.state)
		}
		if w.ticket.Waited() != time.Second {
			t.Errorf("waiter %d waited %v, want 1s", w.seq, w.ticket.Waited())
		}
	}
	if s := q.Stats(); s.Queued != 0 || s.InUse != 4 {
		t.Fatalf("stats after Open %+v; want nothing queued, 4 tickets out", s)
	}
	late := grantedT(t, q, Request{Tenant: "d"}) // over the capacity of 1: granted
	held.Release()
	late.Release()
	for _, w := range waiters {
		w.ticket.Release()
	}
	if s := q.Stats(); s.InUse != 0 {
		t.Fatalf("tickets out after every release: %d", s.InUse)
	}
}
