package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
