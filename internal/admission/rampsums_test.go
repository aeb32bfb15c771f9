package admission

import (
	"fmt"
	"testing"
	"time"
)

// Distinct tenants arriving at a pool another tenant keeps busy each
// become busy while others are active, so each ramps and its every
// request is judged against the others (holds). That judgement reads one
// scan of the remembered tenants per RampWindow/rampRescans, not one per
// request: 20,000 new tenants over two seconds visit at most a few scans'
// worth of entries. Before, each request scanned every remembered tenant:
// 73.5 million entries visited here (~3,700 a request, 13 s of CPU), the pool's lock
// held for all of it.
func TestRampCostBoundedUnderDistinctTenants(t *testing.T) {
	q, clk := rampQueue(24, 2*time.Second)
	steady := steadyHolding(t, q, clk, 12)
	const n = 20_000
	for i := range n {
		clk.Advance(100 * time.Microsecond) // 2 s in all: every tenant stays active
		tk := grantedT(t, q, Request{Tenant: fmt.Sprintf("ip:10.0.%d.%d", i>>8, i&255), Cost: 100})
		tk.Release()
	}
	q.mu.Lock()
	visits, remembered := q.sums.visits, len(q.ramps)
	q.mu.Unlock()
	// 2 s is 32 rescan intervals: at most 33 scans of at most maxRamps.
	if limit := uint64(33 * maxRamps); visits > limit {
		t.Fatalf("%d entries visited for %d requests, want at most %d (%d scans of %d)", visits, n, limit, 33, maxRamps)
	}
	if remembered > maxRamps {
		t.Fatalf("%d tenants remembered, want at most %d", remembered, maxRamps)
	}
	if s := q.Stats(); s.Ramping == 0 {
		t.Fatal("no tenant ramping: the new tenants were not judged against the steady one")
	}
	for _, tk := range steady {
		tk.Release()
	}
}

// Past rampExact tenants, a ramping tenant's hold reads the scanned sums
// less its own share; read at the instant of the scan they are what the
// per-request loop computes.
func TestRampSumsMatchTheExactScan(t *testing.T) {
	q, clk := rampQueue(64, 2*time.Second)
	for i := range 3 * rampExact { // some granted and kept, some released, some held by their ramp
		clk.Advance(time.Millisecond)
		tk, _, err := q.submit(Request{Tenant: fmt.Sprintf("t%d", i%40), Cost: 100, Weight: float64(1 + i%3)})
		if err != nil {
			t.Fatal(err)
		}
		if tk != nil && i%2 == 1 {
			tk.Release()
		}
	}
	for i := range 2 * rampExact { // more tenants, active, holding nothing
		clk.Advance(time.Millisecond)
		if tk, _, err := q.submit(Request{Tenant: fmt.Sprintf("u%d", i), Cost: 100}); err != nil {
			t.Fatal(err)
		} else if tk != nil {
			tk.Release()
		}
	}
	clk.Advance(time.Second) // a rescan is due
	now := clk.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ramps) <= rampExact {
		t.Fatalf("%d tenants remembered, want more than %d", len(q.ramps), rampExact)
	}
	q.rampScan(now)
	for _, tenant := range []string{"t0", "t1", "t7", "u3"} {
		rs := q.ramps[tenant]
		if rs == nil {
			t.Fatalf("%s not remembered", tenant)
		}
		var weights float64
		var kept, margin int
		others := false
		for name, o := range q.ramps {
			if name == tenant || !q.active(name, o, now) {
				continue
			}
			others = true
			weights += o.weight
			kept += max(max(o.peak, o.prevPeak)-q.inUseOf(name), 0)
			margin += rampMargin(max(o.peak, o.prevPeak))
		}
		w, k, m, o := q.othersSums(rs, now)
		if w != weights || k != kept || m != margin || o != others {
			t.Fatalf("%s: sums %v %d %d %v, the exact scan %v %d %d %v", tenant, w, k, m, o, weights, kept, margin, others)
		}
	}
}
