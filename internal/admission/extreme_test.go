package admission

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestEstimateCostSaturates(t *testing.T) {
	for _, c := range []struct{ bytes, max, def int }{
		{math.MaxInt, math.MaxInt, 0},
		{math.MaxInt - 1, 1, 0},
		{1, math.MaxInt, math.MaxInt},
		{math.MinInt, math.MinInt, math.MinInt},
		{0, 0, math.MaxInt},
	} {
		got := EstimateCost(c.bytes, c.max, c.def)
		if !(got >= 1 && got <= MaxCost) || got != math.Trunc(got) {
			t.Errorf("EstimateCost(%d, %d, %d) = %v, want a whole number in [1, %d]", c.bytes, c.max, c.def, got, int64(MaxCost))
		}
		if int64(got) <= 0 {
			t.Errorf("EstimateCost(%d, %d, %d) = %v does not convert to a positive int64", c.bytes, c.max, c.def, got)
		}
	}
}

// grantSequence runs one slot, fair, in injected time: a warm-up request
// holds the slot; when extreme > 0, tenant x's request of that cost is
// served next (else another warm-up); then tenants a (weight 1) and b
// (weight 2) queue 30 short requests each, interleaved, and x one more
// extreme request halfway through. Each grant
// holds the slot one second (the backend's real work does not depend on
// the estimate). It returns who was granted in order and each a/b
// request's wait.
func grantSequence(t *testing.T, extreme float64) (order []string, waits map[string][]time.Duration) {
	t.Helper()
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Fair: true}, newCapacity(1).get, clk.Now)
	cur, _, err := q.submit(Request{Tenant: "warm", Cost: 1})
	if err != nil || cur == nil {
		t.Fatalf("warm-up not granted: %v", err)
	}
	type queued struct {
		w      *waiter
		tenant string
		at     time.Time
	}
	var pending []queued
	add := func(tenant string, weight, cost float64) {
		_, w, err := q.submit(Request{Tenant: tenant, Weight: weight, Cost: cost})
		if err != nil || w == nil {
			t.Fatalf("%s (cost %v) not queued: %v", tenant, cost, err)
		}
		pending = append(pending, queued{w, tenant, clk.Now()})
	}
	if extreme > 0 {
		// x arrives first, alone, and is served at once: the class's
		// virtual time moves past its tag before the others arrive.
		add("x", 1, extreme)
		clk.Advance(time.Second)
		cur.Release()
		if pending[0].w.state != granted {
			t.Fatal("x not granted")
		}
		cur, pending = pending[0].w.ticket, nil
	} else {
		clk.Advance(time.Second)
		cur.Release()
		cur, _, _ = q.submit(Request{Tenant: "warm", Cost: 1})
	}
	for i := range 30 {
		add("a", 1, 10)
		add("b", 2, 10)
		if i == 15 && extreme > 0 {
			add("x", 1, extreme)
		}
	}
	waits = map[string][]time.Duration{}
	for len(pending) > 0 {
		clk.Advance(time.Second)
		cur.Release()
		i := slices.IndexFunc(pending, func(p queued) bool { return p.w.state == granted })
		if i < 0 {
			t.Fatalf("a release granted nobody; %d waiting", len(pending))
		}
		p := pending[i]
		pending = slices.Delete(pending, i, i+1)
		cur = p.w.ticket
		if p.tenant != "x" {
			order = append(order, p.tenant)
			waits[p.tenant] = append(waits[p.tenant], clk.Now().Sub(p.at))
		}
	}
	cur.Release()
	return order, waits
}

// TestExtremeRequestLeavesOthersWaitsUnchanged: a tenant's request at the
// largest max_tokens the gateway accepts, or with a cost past every bound
// (saturated by EstimateCost), is ordered by its own cost: the other
// tenants are granted in the same order and after the same waits as when
// it is not there at all (the extreme requests go last, whose slot time
// is the only thing they take).
func TestExtremeRequestLeavesOthersWaitsUnchanged(t *testing.T) {
	baseOrder, baseWaits := grantSequence(t, 0)
	if !slices.Contains(baseOrder, "a") || !slices.Contains(baseOrder, "b") {
		t.Fatalf("baseline order %v", baseOrder)
	}
	for _, extreme := range []float64{
		EstimateCost(1000, 1<<24, 0),                // the largest max_tokens accepted
		EstimateCost(math.MaxInt, math.MaxInt, 0),   // saturated
		EstimateCost(math.MaxInt, math.MaxInt, 100), // saturated, default ignored
	} {
		order, waits := grantSequence(t, extreme)
		if !slices.Equal(order, baseOrder) {
			t.Fatalf("cost %v: order of the other tenants changed:\n%v\nwant\n%v", extreme, order, baseOrder)
		}
		for _, tenant := range []string{"a", "b"} {
			if !slices.Equal(waits[tenant], baseWaits[tenant]) {
				t.Fatalf("cost %v: tenant %s waits %v, want %v", extreme, tenant, waits[tenant], baseWaits[tenant])
			}
		}
	}
}
