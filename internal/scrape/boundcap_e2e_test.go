package scrape_test

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/scrape"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestReportedBoundCapsAdaptiveLimit: a real simulator with 4 batch slots,
// which it reports (sluice_sim_slots), running 2 of this gateway's
// streams with nothing queued, and an adaptive limit of 18 (one that grew
// past the slots while the engine's latency hardly moved): after one
// reading the limit is at most the 4 slots, with no queue seen first.
// Before, the slots were learned only from a queue in two readings in a
// row, so the limit stayed at 18 and up to 14 requests could wait in the
// engine's own queue (docs/BENCHMARKS.md §7e-§7f). The same engine with
// its bound unread (an engine that reports none: vLLM, or one without
// metrics) keeps the limit as before: 18, uncapped until it queues.
func TestReportedBoundCapsAdaptiveLimit(t *testing.T) {
	const slots = 4
	for _, tc := range []struct {
		name  string
		names scrape.Names
		want  int // the limit after one reading
	}{
		{"reports its bound", scrape.Names{}, slots + 1},
		{"reports no bound", scrape.Names{BatchBound: []string{}}, 18},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bed := newSimBed(t, sim.Config{Seed: 1, Slots: slots, MaxWaiting: 100})
			b, err := endpoint.New(endpoint.Spec{URL: bed.url}, endpoint.HealthPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			b.SetLimiter(admission.NewAdaptiveLimit(admission.LimitConfig{Initial: 18, NoProbe: true}))
			bed.stream(b)
			bed.stream(b)
			bed.await(2, 0)

			now := time.Now()
			sc := scrape.NewScraper(scrape.Config{CapConcurrency: true, Names: tc.names,
				Now: func() time.Time { return now }}, bed.client, nil)
			if err := sc.ScrapeOnce(t.Context(), []*endpoint.Backend{b}); err != nil {
				t.Fatal(err)
			}
			if got := b.Limit(); got != tc.want {
				t.Fatalf("Limit = %d after one reading of an idle-queued engine, want %d", got, tc.want)
			}
			// The free slots stay usable, and one more waits in the
			// engine; with a bound, none past it.
			for range slots + 1 - 2 {
				bed.stream(b)
			}
			bed.await(slots, 1)
			if got := b.HasCapacity(); got != (tc.want > slots+1) {
				t.Fatalf("HasCapacity = %v with the engine's %d slots full, one waiting, and a limit of %d", got, slots, tc.want)
			}
		})
	}
}
