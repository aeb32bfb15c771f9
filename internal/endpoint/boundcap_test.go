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

// TestReportedBoundChangeForgetsWhatTheOldEngineTaught: an engine
// restarted with another max_running_requests is a new engine. Restarted
// from 16 to 32 (a reading with no bound between, while it started), the 16 learned from its queue no longer hold it: the cap
// is the new bound and its handover from the first reading. Restarted
// from 32 down to 8, with a KV cache that fills at 6, those 6 are learned
// as before, though the old engine once ran 30 (its peak).
func TestReportedBoundChangeForgetsWhatTheOldEngineTaught(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(60))

	for range 2 { // full at its bound of 16, a queue behind: 16 learned
		b.ObserveLoad(bounded(clk, 16, 4, 20, 16), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	if got, slots := b.ScrapedCap(); got != 18 || slots != 16 {
		t.Fatalf("setup: cap %d slots %d, want 18 and 16", got, slots)
	}
	b.ObserveLoad(bounded(clk, 0, 0, 0, 0), clk.now) // starting up: no bound yet
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(bounded(clk, 0, 0, 0, 32), clk.now) // back, idle, with 32
	if got, slots := b.ScrapedCap(); got != 36 || slots != 32 {
		t.Fatalf("restarted with a bound of 32: cap %d slots %d, want 36 and 32 (the 16 learned before are the old engine's)", got, slots)
	}
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(bounded(clk, 30, 0, 30, 32), clk.now)

	clk.t = clk.t.Add(time.Second)
	for range 2 { // back with 8; its KV cache fills at 6
		b.ObserveLoad(bounded(clk, 6, 3, 9, 8), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	if got, slots := b.ScrapedCap(); got != 6 || slots != 6 {
		t.Fatalf("restarted with a bound of 8, full at 6: cap %d slots %d, want 6 and 6 (the old peak of 30 must not hide the queue)", got, slots)
	}
}

// TestStaleReportedBoundFallsBack: a bound read before the engine's
// metrics went away caps nothing once the reading is stale, and then
// leaves the backend to what bounds one of unknown slots: its peers'
// limits, and the backlog this gateway sees (14 streams sent, 8 started,
// 6 with no first token past twice the typical wait: held at the 8).
func TestStaleReportedBoundFallsBack(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	b.ObserveLoad(bounded(clk, 2, 0, 2, 16), clk.now)
	if got := b.Limit(); got != 18 {
		t.Fatalf("fresh: Limit %d, want the bound's 18", got)
	}
	clk.t = clk.t.Add(time.Minute) // every scrape since failed
	if got := b.Limit(); got != 40 {
		t.Fatalf("stale: Limit %d, want the adaptive 40", got)
	}
	if got := b.LimitAmong(7); got != 10 {
		t.Fatalf("stale, among peers at 7: LimitAmong %d, want 10 (1.5 x 7)", got)
	}
	for range 14 {
		if !b.Acquire() {
			t.Fatal("Acquire refused below the limit")
		}
		b.StartWaitingOf(clk.t, Wait{})
	}
	clk.t = clk.t.Add(40 * time.Millisecond)
	for range 8 {
		b.FirstTokenOf(clk.t, 40*time.Millisecond, Wait{})
	}
	clk.t = clk.t.Add(200 * time.Millisecond)
	if got := b.Limit(); got != 8 {
		t.Fatalf("stale, 6 streams stalled behind 8 started: Limit %d, want 8", got)
	}
}

// TestSlotLimitLeavesOutTheHandover: the handover past an engine's batch
// bound (16 + 2), reported or learned, is for live requests, whose next
// one is on its way when a sequence ends; queued jobs may fill only the 16
// the engine runs at once (admission.QueueConfig.SpareCapacity). A limit
// below the slots has no handover to leave out, and without a fresh
// reading nothing is capped.
func TestSlotLimitLeavesOutTheHandover(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(40))
	if got := b.SlotLimitAmong(0); got != 40 {
		t.Fatalf("no reading: SlotLimitAmong = %d, want the limit 40", got)
	}
	b.ObserveLoad(bounded(clk, 4, 0, 4, 16), clk.now)
	if l, s := b.Limit(), b.SlotLimitAmong(0); l != 18 || s != 16 {
		t.Fatalf("bound 16: Limit %d SlotLimitAmong %d, want 18 and 16", l, s)
	}
	b.SetLimiter(admission.Static(10)) // the adaptive limit below the slots
	if got := b.SlotLimitAmong(0); got != 10 {
		t.Fatalf("limit 10 under a bound of 16: SlotLimitAmong = %d, want 10", got)
	}
	b.SetLimiter(admission.Static(40))
	clk.t = clk.t.Add(time.Hour) // the reading expired: nothing capped
	if l, s := b.Limit(), b.SlotLimitAmong(0); l != 40 || s != 40 {
		t.Fatalf("stale reading: Limit %d SlotLimitAmong %d, want 40 and 40", l, s)
	}

	// An engine that reports no bound (vLLM): 16 slots learned from two
	// readings in a row queued behind a batch of 16, the same handover.
	v := mustNew(t, Spec{URL: "http://v:1"}, HealthPolicy{})
	v.SetLimiter(admission.Static(40))
	for range 2 {
		v.ObserveLoad(reading(clk, 16, 4, 20), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	if l, s := v.Limit(), v.SlotLimitAmong(0); l != 18 || s != 16 {
		t.Fatalf("16 slots learned, no bound: Limit %d SlotLimitAmong %d, want 18 and 16", l, s)
	}
}
