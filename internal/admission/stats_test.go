package admission

import (
	"testing"
	"time"
)

// Stats breaks each tenant's queued requests down by class, with how long
// the oldest of them has waited so far: what the dashboard shows.
func TestStatsTenantWaitsByClass(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, clk.Now)
	grantedT(t, q, Request{Tenant: "holder"})
	submitT(t, q, Request{Tenant: "alice"})
	clk.Advance(2 * time.Second)
	submitT(t, q, Request{Tenant: "alice"})
	submitT(t, q, Request{Tenant: "alice", Class: Batch})
	clk.Advance(time.Second)
	submitT(t, q, Request{Tenant: "bob", Class: Batch})

	st := q.Stats()
	alice := st.Tenants["alice"]
	if alice.Queued != 3 || len(alice.Waiting) != 2 {
		t.Fatalf("alice: %+v", alice)
	}
	want := map[string]TenantClassWait{
		"interactive": {Class: "interactive", Queued: 2, OldestWait: 3 * time.Second},
		"batch":       {Class: "batch", Queued: 1, OldestWait: time.Second},
	}
	for _, w := range alice.Waiting {
		if w != want[w.Class] {
			t.Errorf("alice %s: %+v, want %+v", w.Class, w, want[w.Class])
		}
	}
	if bob := st.Tenants["bob"]; len(bob.Waiting) != 1 || bob.Waiting[0].OldestWait != 0 || bob.Waiting[0].Queued != 1 {
		t.Errorf("bob: %+v", bob)
	}
	if holder := st.Tenants["holder"]; holder.InUse != 1 || holder.Waiting != nil {
		t.Errorf("holder (granted, nothing queued): %+v", holder)
	}
}
