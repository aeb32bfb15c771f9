package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// TestLearnedSlotsWithoutBoundGetTheHandover: an engine that reports no
// batch bound (vLLM) and queues twice in a row behind a batch of 16 has
// 16 slots learned, and the cap is those and the handover of an eighth
// (16 + 2), as for a reported bound: capped at 16 exactly, its slots idled
// while requests queued in the gateway (learnedcap.go). A larger batch
// than learned, run within the handover, is learned at once and the cap
// moves with it, with no probe backoff to wait for.
func TestLearnedSlotsWithoutBoundGetTheHandover(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	for range 2 {
		b.ObserveLoad(reading(clk, 16, 4, 20), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	if got, slots := b.ScrapedCap(); got != 18 || slots != 16 {
		t.Fatalf("learned from a queue: cap %d slots %d, want 18 and 16", got, slots)
	}
	if got := b.Limit(); got != 18 {
		t.Fatalf("Limit = %d, want the learned 16 and the handover of 2, below the adaptive 40", got)
	}
	// It ran all 18 with nothing waiting: it has more slots than learned.
	b.ObserveLoad(reading(clk, 18, 0, 18), clk.now)
	if got, slots := b.ScrapedCap(); got != 21 || slots != 18 {
		t.Fatalf("after a batch of 18 ran: cap %d slots %d, want 21 and 18", got, slots)
	}
}

// TestSmallerBatchBehindAQueueIsLearned: an engine that reports no bound,
// 16 slots learned, restarted with 8 (vLLM's max_num_seqs is in no
// metric): it queues behind batches of 8, never again at its old peak of
// 16, which the rule that learns slots asks for. Three readings in a row
// with a queue behind a smaller batch learn the largest of those batches
// as the slots; fewer, or readings not in a row (the scrapes failed in
// between), do not.
func TestSmallerBatchBehindAQueueIsLearned(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	for range 2 {
		b.ObserveLoad(reading(clk, 16, 4, 20), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	// Restarted with 8 slots: the 18 of this gateway, 8 run and 10 wait.
	b.ObserveLoad(reading(clk, 8, 10, 18), clk.now)
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 7, 11, 18), clk.now)
	if got, slots := b.ScrapedCap(); slots != 16 || got != 18 {
		t.Fatalf("after two readings behind smaller batches: cap %d slots %d, want 18 and 16 still", got, slots)
	}
	// The scrapes fail for 10 s (the readings expire after 3 s): the
	// next reading starts the count again.
	clk.t = clk.t.Add(10 * time.Second)
	b.ObserveLoad(reading(clk, 8, 10, 18), clk.now)
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 10, 18), clk.now)
	if _, slots := b.ScrapedCap(); slots != 16 {
		t.Fatalf("after a gap and two readings: slots %d, want 16 still", slots)
	}
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 10, 18), clk.now)
	if got, slots := b.ScrapedCap(); slots != 8 || got != 9 {
		t.Fatalf("after three readings in a row behind batches of 8: cap %d slots %d, want 9 and 8", got, slots)
	}
	// Full at 8 with the handover waiting: nothing more is learned, and a
	// batch that grows (restarted larger again) is learned as before.
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 1, 9), clk.now)
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 9, 0, 9), clk.now)
	if got, slots := b.ScrapedCap(); slots != 9 || got != 11 {
		t.Fatalf("after a batch of 9 ran: cap %d slots %d, want 11 and 9", got, slots)
	}
}

// TestQueuesApartAreNotTwoReadingsInARow: a queue seen before the scrapes
// failed for a while and one seen after are no evidence of one full batch
// (the rule asks for two readings in a row); two fresh readings are.
func TestQueuesApartAreNotTwoReadingsInARow(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	b.ObserveLoad(reading(clk, 8, 2, 10), clk.now)
	clk.t = clk.t.Add(10 * time.Second) // past the reading's expiry (3 s)
	b.ObserveLoad(reading(clk, 8, 2, 10), clk.now)
	if got, slots := b.ScrapedCap(); slots != 0 || got != 0 {
		t.Fatalf("queues 10 s apart: cap %d slots %d, want none learned", got, slots)
	}
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 2, 10), clk.now)
	if got, slots := b.ScrapedCap(); slots != 8 || got != 9 {
		t.Fatalf("then two in a row: cap %d slots %d, want 9 and 8", got, slots)
	}
}

// TestGrowingBatchBehindAQueueIsNotSmaller: an engine with 16 slots
// learned, taking a burst at a step boundary: each reading catches a
// request in transit waiting beside a batch larger than the last (4, 6,
// 9). A batch that grows while requests wait was not full
// (queuedButGrowing), so three such readings are no evidence of a smaller
// batch: the slots stay 16. Learned at 9, the cap fell from 18 to 11 and
// climbed back one handover per scrape while the engine had 7 idle slots.
func TestGrowingBatchBehindAQueueIsNotSmaller(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	for range 2 {
		b.ObserveLoad(reading(clk, 16, 4, 20), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	for _, run := range []float64{4, 6, 9} {
		b.ObserveLoad(reading(clk, run, 1, int64(run)+1), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	if got, slots := b.ScrapedCap(); slots != 16 || got != 18 {
		t.Fatalf("after batches of 4, 6 and 9 each with a request in transit: cap %d slots %d, want 18 and 16", got, slots)
	}
}
