package scrape_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A real simulator reports its batch slots (sluice_sim_slots), which the
// default names read as its batch bound: the backend's reported room is
// that bound less what other clients run there (two streams sent past
// this gateway), from a fresh reading only; an empty name list reads no
// bound.
func TestSimBatchBoundIsReportedRoom(t *testing.T) {
	url := startSimWith(t, sim.Config{Seed: 1, Slots: 12})
	client := simClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // ends the streams before the sim closes
	for range 2 {
		startStream(t, ctx, client, url)
	}
	b := newBackend(t, url)
	now := time.Now()
	scrapeSim(t, client, b, now, scrape.Names{})
	if l, _ := b.Load(); l.BatchBound != 12 || l.Running != 2 {
		t.Fatalf("scraped bound %v, running %v; want 12, 2", l.BatchBound, l.Running)
	}
	if room, ok := b.ReportedRoom(now); !ok || room != 10 {
		t.Fatalf("reported room %d (ok %v); want 10: 12 slots, 2 run by another client", room, ok)
	}
	// Stale: three intervals later the reading tells nothing of now.
	if _, ok := b.ReportedRoom(now.Add(3 * time.Second)); ok {
		t.Fatal("a reading 3 s old (StaleAfter) still gives room; want none")
	}

	scrapeSim(t, client, b, now, scrape.Names{BatchBound: []string{}})
	// No bound read: the room left is the KV estimate's (kv_e2e_test.go).
	if l, _ := b.Load(); l.BatchBound != 0 {
		t.Fatalf("batch_bound_metrics [] still reads a bound of %v; want none", l.BatchBound)
	}
}
