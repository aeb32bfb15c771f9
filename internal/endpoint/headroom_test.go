package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// fakeClock is an injected clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// reading is a scrape of a backend: its own running and waiting counts,
// and this gateway's in-flight count when it answered, trusted for 3s.
func reading(clk *fakeClock, running, waiting float64, mine int64) Load {
	return Load{Running: running, Waiting: waiting, At: clk.t, Expires: clk.t.Add(3 * time.Second), InflightAtScrape: mine}
}

// hold makes b's in-flight count n (Acquire ignores limits once attached
// after the fact: it is raised by hand here).
func hold(b *Backend, n int) { b.inflight.Store(int64(n)) }

func TestScrapedCapLimitsToLearnedSlots(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(18)) // an adaptive limit past the real slots

	// Calm: it never queued, so nothing is known and nothing is capped.
	b.ObserveLoad(reading(clk, 4, 0, 4), clk.now)
	if got := b.Limit(); got != 18 {
		t.Fatalf("limit before the backend ever queued = %d, want the adaptive 18", got)
	}
	// One reading with a queue is not proof (a request that arrived since
	// the last engine step waits too).
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 6, 14), clk.now)
	if got, slots := b.ScrapedCap(); got != 0 || slots != 0 {
		t.Fatalf("after one queued reading: cap %d slots %d, want none yet", got, slots)
	}
	// Two in a row at its largest batch: 8 slots, and this gateway, alone
	// here (mine = demand), may hold 8 and the handover of 1.
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 8, 10, 18), clk.now)
	if got, slots := b.ScrapedCap(); got != 9 || slots != 8 {
		t.Fatalf("cap %d slots %d, want 9 and 8", got, slots)
	}
	if got := b.Limit(); got != 9 {
		t.Fatalf("Limit = %d, want the scraped 8 + 1 below the adaptive 18", got)
	}
	// Scaling plans with the same slots: the adaptive 18 would count the
	// engine's waiting room as service.
	if got := b.FullLimit(); got != 9 {
		t.Fatalf("FullLimit = %d, want the scraped 8 + 1 below the adaptive 18", got)
	}
	hold(b, 9)
	if b.HasCapacity() || b.Acquire() {
		t.Fatal("a tenth request admitted to a backend running its 8 slots with one handed over")
	}

	// The queue drained and two slots are free: room for two more.
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(reading(clk, 6, 0, 6), clk.now)
	if got := b.Limit(); got != 9 {
		t.Fatalf("Limit with 2 free slots and 6 held = %d, want 9", got)
	}
	// The reading goes stale (scrapes failing): the cap is dropped, the
	// adaptive limit rules again.
	clk.t = clk.t.Add(3 * time.Second)
	if got := b.Limit(); got != 18 {
		t.Fatalf("Limit after the reading expired = %d, want 18", got)
	}
}

func TestScrapedCapSharesSlotsBetweenReplicas(t *testing.T) {
	// Two gateway replicas in front of one backend with 8 slots. Each sees
	// the backend's whole demand (its own requests and the other's), so
	// their caps add up to the slots and the handover (8 + 1), not to
	// twice them.
	clk := &fakeClock{t: t0}
	a := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	for _, g := range []*Backend{a, b} {
		g.SetLimiter(admission.Static(18))
	}
	// A holds 12 and B 6 of the 18 requests at the backend: 8 run, 10 wait.
	for range 2 {
		a.ObserveLoad(reading(clk, 8, 10, 12), clk.now)
		b.ObserveLoad(reading(clk, 8, 10, 6), clk.now)
		clk.t = clk.t.Add(time.Second)
	}
	la, lb := a.Limit(), b.Limit()
	if la+lb > 9 {
		t.Fatalf("replica limits %d + %d = %d, more than the backend's 8 slots and 1 handed over", la, lb, la+lb)
	}
	if la != 6 || lb != 3 {
		t.Fatalf("replica limits %d and %d, want 6 and 3 (their shares of the demand)", la, lb)
	}
}

func TestScrapedCapGrowsBackFromALowGuess(t *testing.T) {
	// The backend, which reports a bound of 32, queued twice at 3 running
	// (its KV cache full that time): 3 slots learned below the bound, which
	// cap exactly. Without a queue the cap still leaves one more, so a
	// larger batch is seen and learned. (An engine that reports no bound
	// has its learned slots' handover for that:
	// TestLearnedSlotsWithoutBoundGetTheHandover.)
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(18))
	b.ObserveLoad(bounded(clk, 3, 1, 4, 32), clk.now)
	b.ObserveLoad(bounded(clk, 3, 1, 4, 32), clk.now)
	if _, slots := b.ScrapedCap(); slots != 3 {
		t.Fatalf("slots = %d, want 3", slots)
	}
	b.ObserveLoad(bounded(clk, 3, 0, 3, 32), clk.now)
	if got := b.Limit(); got != 3 {
		t.Fatalf("Limit right after learning the slots = %d, want 3 (no probe into the burst that showed them)", got)
	}
	clk.t = clk.t.Add(firstProbeBackoff)
	b.ObserveLoad(bounded(clk, 3, 0, 3, 32), clk.now)
	if got := b.Limit(); got != 4 {
		t.Fatalf("Limit with no queue at the learned slots = %d, want 4 (one more to find out)", got)
	}
	b.ObserveLoad(bounded(clk, 4, 0, 4, 32), clk.now)
	if got, slots := b.ScrapedCap(); slots != 4 || got != 5 {
		t.Fatalf("after running 4 without a queue: cap %d slots %d, want 5 and 4", got, slots)
	}
}

// A probe past slots learned below a reported bound (here 32: a KV cache
// that fills first) that finds no larger batch is not repeated at every
// scrape: a request sent into a full batch waits inside
// the backend, and a scrape a second later may not show it (it started
// when the batch freed a slot). The first comes firstProbeBackoff after
// the slots were learned, each next one after twice the wait before; one
// that finds room resets it.
func TestScrapedCapProbeBacksOffWhenNoLargerBatchShows(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(18))
	b.ObserveLoad(bounded(clk, 8, 1, 9, 32), clk.now)
	b.ObserveLoad(bounded(clk, 8, 1, 9, 32), clk.now) // 8 slots learned
	clk.t = clk.t.Add(firstProbeBackoff)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now)
	if got := b.Limit(); got != 9 {
		t.Fatalf("first probe: Limit %d, want 9", got)
	}
	clk.t = clk.t.Add(time.Second)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now) // no queue seen, no larger batch either
	if got := b.Limit(); got != 8 {
		t.Fatalf("right after a probe that found nothing: Limit %d, want 8", got)
	}
	clk.t = clk.t.Add(2*firstProbeBackoff - time.Millisecond)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now)
	if got := b.Limit(); got != 8 {
		t.Fatalf("before the backoff ends: Limit %d, want 8", got)
	}
	clk.t = clk.t.Add(time.Millisecond)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now)
	if got := b.Limit(); got != 9 {
		t.Fatalf("after the backoff: Limit %d, want 9 (probe again)", got)
	}
	b.ObserveLoad(bounded(clk, 8, 1, 9, 32), clk.now) // it waited: the wait doubles
	clk.t = clk.t.Add(4*firstProbeBackoff - time.Millisecond)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now)
	if got := b.Limit(); got != 8 {
		t.Fatalf("within the doubled backoff: Limit %d, want 8", got)
	}
	clk.t = clk.t.Add(time.Millisecond)
	b.ObserveLoad(bounded(clk, 8, 0, 8, 32), clk.now)
	b.ObserveLoad(bounded(clk, 9, 0, 9, 32), clk.now) // this probe started: a larger batch
	if got, slots := b.ScrapedCap(); slots != 9 || got != 10 {
		t.Fatalf("after a probe found room: cap %d slots %d, want 10 and 9 (probing freely again)", got, slots)
	}
}

func TestScrapedCapStalledBackendGetsOneRequest(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(18))
	b.ObserveLoad(reading(clk, 2, 0, 2), clk.now)
	b.ObserveLoad(reading(clk, 0, 5, 5), clk.now) // it ran before; now it queues and runs nothing
	if got := b.Limit(); got != 1 {
		t.Fatalf("Limit of a backend that queues and runs nothing = %d, want 1", got)
	}
}

func TestScrapedCapAppliesToStaticAndUnlimited(t *testing.T) {
	clk := &fakeClock{t: t0}
	static := mustNew(t, Spec{URL: "http://h:1", MaxConcurrency: 24}, HealthPolicy{})
	open := mustNew(t, Spec{URL: "http://h:2"}, HealthPolicy{})
	for _, b := range []*Backend{static, open} {
		b.ObserveLoad(reading(clk, 8, 2, 10), clk.now)
		b.ObserveLoad(reading(clk, 8, 2, 10), clk.now)
		if got := b.Limit(); got != 9 {
			t.Errorf("%s: Limit = %d, want the scraped 8 + 1", b.Name(), got)
		}
		if got := b.FullLimit(); got != 9 {
			t.Errorf("%s: FullLimit = %d, want the scraped 8 + 1", b.Name(), got)
		}
	}
}

func TestCapFor(t *testing.T) {
	tests := []struct{ mine, slots, demand, want int }{
		{mine: 18, slots: 8, demand: 18, want: 8},
		{mine: 0, slots: 8, demand: 18, want: 1}, // another client fills it: one request still goes
		{mine: 4, slots: 8, demand: 8, want: 4},  // full, no queue: hold
		{mine: 2, slots: 8, demand: 5, want: 5},  // three free slots
		{mine: 0, slots: 8, demand: 0, want: 8},
		{mine: 10, slots: 8, demand: 6, want: 8}, // four of mine on their way: no free slot
	}
	for _, tt := range tests {
		if got := capFor(tt.mine, tt.slots, tt.demand); got != tt.want {
			t.Errorf("capFor(mine %d, slots %d, demand %d) = %d, want %d", tt.mine, tt.slots, tt.demand, got, tt.want)
		}
	}
}

func TestBacklogBoundHoldsBackendBeforeItsMetricsShowIt(t *testing.T) {
	// A burst fills a backend whose metrics never showed a queue (its slots
	// are unknown): 14 streams sent, 8 start (its batch), 6 get no first
	// token. Once they have waited past twice its typical time to first token (and 100ms)
	// with none starting, the backend is held at the 8 that started,
	// before any scrape shows the queue.
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(24))
	b.ObserveLoad(reading(clk, 2, 0, 2), clk.now) // calm: no queue, nothing capped
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
	clk.t = clk.t.Add(90 * time.Millisecond)
	if got := b.Limit(); got != 24 {
		t.Fatalf("Limit 90ms after the last start = %d, want 24 (no backlog yet)", got)
	}
	clk.t = clk.t.Add(110 * time.Millisecond) // 200ms without a start: past max(2x40ms, 100ms)
	if got := b.Limit(); got != 8 {
		t.Fatalf("Limit with 6 streams stalled behind 8 running = %d, want 8", got)
	}
	if b.HasCapacity() {
		t.Fatal("a backend with a backlog may still be sent requests")
	}
	// One running stream ends and a queued one starts: no backlog for the
	// moment, but the backend stays held at its learned batch (plus one)
	// until its own queue has drained.
	b.ReleaseFed(clk.t, outcome.Success, 0, 0)
	b.FirstTokenOf(clk.t, 200*time.Millisecond, Wait{})
	if got := b.Limit(); got != 9 || b.HasCapacity() {
		t.Fatalf("Limit after a start = %d (capacity %v), want 9 and none: 13 are in flight", got, b.HasCapacity())
	}
	// A scrape that shows the queue takes over with the true batch at
	// once: it confirms the backlog this gateway saw, no second reading
	// is needed.
	b.ObserveLoad(reading(clk, 8, 5, 13), clk.now)
	if got, slots := b.ScrapedCap(); slots != 8 || got != 9 {
		t.Fatalf("scraped cap %d slots %d, want 9 and 8", got, slots)
	}
}

func TestBacklogGuessFromAMachineStallIsNotConfirmedByItsOwnExtraRequest(t *testing.T) {
	// A backend with 8 slots runs the 6 streams this gateway sent, but the
	// gateway, starved of CPU, has read only 5 first tokens when nothing
	// more arrives for 200ms: the backlog bound guesses 5 slots and lets
	// one request past the guess. A scrape then shows 5 running and that
	// one waiting for the engine's next step: no evidence of a full batch.
	// The guess must grow back when the sixth first token is read, not be
	// confirmed as the backend's slots.
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	b.SetLimiter(admission.Static(24))
	b.ObserveLoad(reading(clk, 2, 0, 2), clk.now)
	for range 6 {
		if !b.Acquire() {
			t.Fatal("Acquire refused below the limit")
		}
		b.StartWaitingOf(clk.t, Wait{})
	}
	clk.t = clk.t.Add(40 * time.Millisecond)
	for range 5 {
		b.FirstTokenOf(clk.t, 40*time.Millisecond, Wait{})
	}
	clk.t = clk.t.Add(200 * time.Millisecond)
	if got := b.Limit(); got != 5 {
		t.Fatalf("Limit after the stall = %d, want the guess, 5", got)
	}
	b.ObserveLoad(reading(clk, 5, 1, 6), clk.now)
	if _, slots := b.ScrapedCap(); slots != 0 {
		t.Fatalf("one reading with only the request past the guess waiting set the slots to %d, want none learned", slots)
	}
	b.FirstTokenOf(clk.t, 240*time.Millisecond, Wait{})
	if got := b.Limit(); got != 7 {
		t.Fatalf("Limit after the sixth start = %d, want 7 (the guess grown to 6, plus one)", got)
	}
}
