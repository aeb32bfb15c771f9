package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
)

// TestGrantedRequestWaitsForBackendSlot: a request the queue granted that
// finds its only backend at its limit (a call in flight without a ticket,
// as a cancelled hedge leaves one for a moment) waits for the slot and is
// served, instead of an instant 503 pool_saturated; the wait is metered.
func TestGrantedRequestWaitsForBackendSlot(t *testing.T) {
	be := newGatedBackend(t)
	be.open() // answers at once
	cfg := testConfig(be.URL)
	cfg.Models[0].Backends[0].MaxConcurrency = 1
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]
	if !b.Acquire() { // the ticketless call holding the only slot
		t.Fatal("the idle backend refused a slot")
	}
	answered := make(chan int, 1)
	go func() {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		answered <- resp.StatusCode
	}()
	waitFor(t, b.Awaited) // the granted request waits for the slot
	select {
	case code := <-answered:
		t.Fatalf("answered %d while the backend was still full", code)
	default:
	}
	b.Abandon() // the ticketless call ends
	if code := <-answered; code != 200 {
		t.Fatalf("status %d; want the request served once the slot freed", code)
	}
	if n := testutil.ToFloat64(gw.metrics.SlotWaits.WithLabelValues("m1", "served")); n != 1 {
		t.Fatalf("slot waits served = %v, want 1", n)
	}
}

// TestSlotWaitBoundedByDelayTarget: a granted request waits for a backend
// slot at most what its queue wait left of its class's delay target (at
// least a tenth of it), within its deadline; without a target, its
// deadline alone bounds the wait.
func TestSlotWaitBoundedByDelayTarget(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return start }
	pool := NewPool(PoolParts{Model: &config.Model{Name: "m1"}, SLO: config.SLO{Interactive: 2 * time.Second, Batch: time.Minute}, Now: now})
	var rt Runtime
	call := func(queued time.Duration) *upstreamCall {
		return &upstreamCall{until: start.Add(1200 * time.Millisecond), queued: queued}
	}
	if got := rt.slotWait(pool, call(0)); got != 1200*time.Millisecond {
		t.Fatalf("no queue: slot wait %v, want the 1.2s to its deadline", got)
	}
	var targets [admission.MaxClass + 1]time.Duration
	targets[admission.Interactive] = 500 * time.Millisecond
	pool.queue = admission.NewQueue(admission.QueueConfig{Name: "m1", Targets: targets}, func() int { return 1 }, now)
	for _, c := range []struct{ queued, want time.Duration }{
		{0, 500 * time.Millisecond},
		{300 * time.Millisecond, 200 * time.Millisecond},
		{480 * time.Millisecond, 50 * time.Millisecond},
		{900 * time.Millisecond, 50 * time.Millisecond},
	} {
		if got := rt.slotWait(pool, call(c.queued)); got != c.want {
			t.Fatalf("queued %v: slot wait %v, want %v", c.queued, got, c.want)
		}
	}
}
