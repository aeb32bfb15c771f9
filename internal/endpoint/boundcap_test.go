package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// bounded is a reading of an engine that reports a batch bound.
func bounded(clk *fakeClock, running, waiting float64, mine int64, bound float64) Load {
	l := reading(clk, running, waiting, mine)
	l.BatchBound = bound
	return l
}

// TestReportedBoundIsSlotsFromTheFirstReading: an engine that reports its
// batch bound caps the limit from its first reading, queue or none, at the
// bound and its handover (an eighth more: 16 + 2); the requests of this
// gateway still on their way to it are no free slots; a KV cache that
// fills first (slots learned below the bound) keeps the learned slots, and
// a probe for a larger batch never passes the bound.
func TestReportedBoundIsSlotsFromTheFirstReading(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40)) // an adaptive limit past the slots

	b.ObserveLoad(bounded(clk, 4, 0, 22, 16), clk.now) // 18 of mine in transit
	if got, slots := b.ScrapedCap(); got != 18 || slots != 16 {
		t.Fatalf("first reading of a bound of 16: cap %d slots %d, want 18 and 16", got, slots)
	}
	if got := b.Limit(); got != 18 {
		t.Fatalf("Limit = %d, want the reported 16 and its handover of 2, below the adaptive 40", got)
	}

	// Its KV cache fills at 12: it queues twice in a row at its largest
	// batch, and the 12 learned stay in force below the bound.
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(bounded(clk, 12, 3, 15, 16), clk.now)
	b.ObserveLoad(bounded(clk, 12, 3, 15, 16), clk.now)
	if got, slots := b.ScrapedCap(); got != 12 || slots != 12 {
		t.Fatalf("learned below the bound: cap %d slots %d, want 12 and 12", got, slots)
	}
	// Past the probe backoff with no queue: a probe one past the 12
	// learned, which the bound allows.
	clk.t = clk.t.Add(firstProbeBackoff)
	b.ObserveLoad(bounded(clk, 12, 0, 12, 16), clk.now)
	if got := b.Limit(); got != 13 {
		t.Fatalf("probe below the bound: Limit %d, want 13", got)
	}
	// A batch grown to the bound, with this gateway's 18 there: no probe
	// past it, however long since the last.
	clk.t = clk.t.Add(time.Hour)
	b.ObserveLoad(bounded(clk, 16, 0, 18, 16), clk.now)
	clk.t = clk.t.Add(time.Hour)
	b.ObserveLoad(bounded(clk, 16, 0, 18, 16), clk.now)
	if got, slots := b.ScrapedCap(); got != 18 || slots != 16 {
		t.Fatalf("at the bound: cap %d slots %d, want 18 and 16 (no probe past what the engine says it runs)", got, slots)
	}
}
