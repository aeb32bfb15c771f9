package scrape_test

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestLearnedSlotsOfAVLLMLikeEngineGetTheHandover: a real simulator with 8
// batch slots that it does not report (HideSlots: only vLLM's running and
// waiting gauges, as from vLLM), read with the default metric names, 10 of
// this gateway's streams on it (8 run, 2 wait) and an adaptive limit of
// 40. Two readings in a row with the queue learn the 8 slots, and the
// limit is capped at 8 plus the handover of 1, as for a reported bound:
// the streams already there hold the limit, nothing more is sent. Capped
// at the 8 exactly, as before, the slots idled between a sequence's end
// and the next request's start (docs/BENCHMARKS.md §8, branch vllmwait).
func TestLearnedSlotsOfAVLLMLikeEngineGetTheHandover(t *testing.T) {
	const slots = 8
	bed := newSimBed(t, sim.Config{Seed: 1, Slots: slots, MaxWaiting: 100, HideSlots: true})
	b, err := endpoint.New(endpoint.Spec{URL: bed.url}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{Initial: 40, NoProbe: true}))
	for range slots + 2 {
		bed.stream(b)
	}
	bed.await(slots, 2)

	now := time.Now()
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Now: func() time.Time { return now }}, bed.client, nil)
	read := func() {
		if err := sc.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if got := b.Limit(); got != 40 {
		t.Fatalf("Limit = %d after one reading with a queue, want the adaptive 40 (one reading proves nothing)", got)
	}
	now = now.Add(time.Second)
	read()
	if got, learned := b.ScrapedCap(); learned != slots || got != slots+1 {
		t.Fatalf("scraped cap %d, %d slots learned; want %d and %d", got, learned, slots+1, slots)
	}
	if got := b.Limit(); got != slots+1 {
		t.Fatalf("Limit = %d, want the %d learned slots and the handover of 1", got, slots)
	}
	if b.HasCapacity() {
		t.Fatalf("capacity with %d in flight on an engine of %d slots (limit %d)", slots+2, slots, b.Limit())
	}
}

// TestLearnedSlotsOfALlamaCppEngineGetTheHandover: the same through a real
// simulator writing llama.cpp server's metrics (MetricsStyle llamacpp:
// requests_processing and requests_deferred, no slot count, no KV usage),
// read with the default metric names. llama.cpp reports its --parallel
// slots in no metric either, so they are learned from its queue as vLLM's
// are, and the limit is capped at the 8 slots plus the handover of 1. On
// the old code the default names found no queue metric in the body, every
// scrape failed and the limit stayed at the adaptive 40.
func TestLearnedSlotsOfALlamaCppEngineGetTheHandover(t *testing.T) {
	const slots = 8
	bed := newSimBed(t, sim.Config{Seed: 1, Slots: slots, MaxWaiting: 100, MetricsStyle: sim.MetricsLlamaCpp})
	b, err := endpoint.New(endpoint.Spec{URL: bed.url, Engine: "llamacpp"}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{Initial: 40, NoProbe: true}))
	for range slots + 2 {
		bed.stream(b)
	}
	bed.await(slots, 2)

	now := time.Now()
	sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Now: func() time.Time { return now }}, bed.client, nil)
	read := func() {
		if err := sc.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if l, _ := b.Load(); l.Running != slots || l.Waiting != 2 || l.BatchBound != 0 || l.KVCacheUsage != 0 {
		t.Fatalf("reading %+v, want %d running, 2 waiting, no bound, no KV usage", l, slots)
	}
	if got := b.Limit(); got != 40 {
		t.Fatalf("Limit = %d after one reading with a queue, want the adaptive 40 (one reading proves nothing)", got)
	}
	now = now.Add(time.Second)
	read()
	if got, learned := b.ScrapedCap(); learned != slots || got != slots+1 {
		t.Fatalf("scraped cap %d, %d slots learned; want %d and %d", got, learned, slots+1, slots)
	}
	if got := b.Limit(); got != slots+1 {
		t.Fatalf("Limit = %d, want the %d learned slots and the handover of 1", got, slots)
	}
	if b.HasCapacity() {
		t.Fatalf("capacity with %d in flight on an engine of %d slots (limit %d)", slots+2, slots, b.Limit())
	}
}
