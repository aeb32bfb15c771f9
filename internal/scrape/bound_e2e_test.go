package scrape_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A real simulator reports its batch slots (sluice_sim_slots), which the
// default names read as its batch bound: the backend's reported room is
// that bound less what other clients run there (two streams sent past
// this gateway), from a fresh reading only; an empty name list reads no
// bound.
func TestSimBatchBoundIsReportedRoom(t *testing.T) {
	s := sim.New(sim.Config{Seed: 1, Slots: 12})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // ends the streams before the sim closes
	for range 2 {
		startStream(t, ctx, client, ts.URL)
	}
	b, err := endpoint.New(endpoint.Spec{URL: ts.URL}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// A scrape may take a minute (a hang guard): the default timeout, the
	// 1 s interval, is a wall-clock bound a loaded machine can miss
	// (ScrapeOnce's "context deadline exceeded").
	sc := scrape.NewScraper(scrape.Config{Now: func() time.Time { return now }, Timeout: time.Minute}, client, nil)
	if err := sc.ScrapeOnce(context.Background(), []*endpoint.Backend{b}); err != nil {
		t.Fatal(err)
	}
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

	none := scrape.NewScraper(scrape.Config{Now: func() time.Time { return now }, Timeout: time.Minute, Names: scrape.Names{BatchBound: []string{}}}, client, nil)
	if err := none.ScrapeOnce(context.Background(), []*endpoint.Backend{b}); err != nil {
		t.Fatal(err)
	}
	// No bound read: the room left is the KV estimate's (kv_e2e_test.go).
	if l, _ := b.Load(); l.BatchBound != 0 {
		t.Fatalf("batch_bound_metrics [] still reads a bound of %v; want none", l.BatchBound)
	}
}
