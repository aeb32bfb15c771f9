package endpoint

import (
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Once two lone long prompts taught a backend's prefill rate (4,000
// tokens in 1.6 s: 2,500 tokens/s), the prompts of the streams waiting
// there for a first token are its queued prefill, and a stream sent now
// is priced against it: with 500 ms to spare, one 4,000-token prompt
// waiting leaves no room for another until it has 500 ms of prefill left;
// a burst of 1,000-token prompts goes in as far as the prefill before
// each stays within 500 ms. Before the rate is learned nothing is priced
// (branch burstprefill).
func TestPrefillRoomPricesTheWaitingPrompts(t *testing.T) {
	clock := time.Unix(1000, 0)
	b, err := New(Spec{URL: "http://x"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	const within = 500 * time.Millisecond
	room := func(prompt int64) (int, bool) { return b.PrefillRoom(clock, prompt, within) }
	lone := func(ttft time.Duration, tokens int64) {
		b.Acquire()
		b.StartWaitingOf(clock, tokens)
		clock = clock.Add(ttft)
		b.FirstTokenOf(clock, ttft, tokens)
		b.ReleaseFed(clock, outcome.Success, ttft, 0)
	}
	if _, priced := room(4000); priced {
		t.Fatal("priced before any start taught the rate")
	}
	lone(1600*time.Millisecond, 4000)
	if _, priced := room(4000); priced {
		t.Fatal("priced after one start: no rate yet")
	}
	lone(1600*time.Millisecond, 4000)
	if got, priced := room(4000); !priced || got != 1 {
		t.Fatalf("nothing waiting, rate learned: room %d (priced %v), want 1 (a lone long prompt starts on its own prefill)", got, priced)
	}
	if got, _ := room(1000); got != 1+1 {
		t.Fatalf("nothing waiting: room for 1,000-token prompts %d, want 2 (the second waits 400 ms for the first)", got)
	}
	if got, _ := room(0); got != math.MaxInt {
		t.Fatalf("a prompt of unknown size with nothing waiting: room %d, want no bound", got)
	}
	// A 4,000-token prompt sent: 1.6 s of prefill queued.
	b.Acquire()
	b.StartWaitingOf(clock, 4000)
	if got, _ := room(10); got != 1 {
		t.Fatalf("a 4,000-token prompt just sent: room %d, want 1 (its own slot, no more: 1.6 s of prefill ahead)", got)
	}
	clock = clock.Add(1100 * time.Millisecond) // 500 ms of its prefill left
	if got, _ := room(4000); got != 2 {
		t.Fatalf("1.1 s into its prefill: room %d, want 2 (one more starts 500 ms past its own prefill)", got)
	}
	clock = clock.Add(-100 * time.Millisecond)
	if got, _ := room(4000); got != 1 {
		t.Fatalf("1 s into its prefill: room %d, want 1 (600 ms of prefill ahead)", got)
	}
	b.FirstTokenOf(clock, 1600*time.Millisecond, 4000)
	if got, _ := room(4000); got != 2 {
		t.Fatalf("its first token came: room %d, want 2 (it runs, one more may start)", got)
	}
	// A stream that ended without a first token takes its prompt out.
	b.Acquire()
	b.StartWaitingOf(clock, 4000)
	b.Acquire()
	b.StartWaitingOf(clock, 4000)
	if got, _ := room(10); got != 3 {
		t.Fatalf("two 4,000-token prompts waiting: room %d, want 3 (what runs)", got)
	}
	b.EndWaitingOf(clock, 4000)
	b.Release(clock, outcome.Ignored, 0, 0)
	clock = clock.Add(1100 * time.Millisecond)
	if got, _ := room(4000); got != 3 {
		t.Fatalf("one left, 1.1 s later: room %d, want 3 (2 running, 1 more)", got)
	}
}

// A hedge's losing leg withdrawn before its first token (WithdrawnOf)
// takes its prompt out of the queued prefill, and the backend's prefill
// spent on it with it: the prompts still waiting are not prefilled by the
// time that went to the withdrawn one. With a 4,000-token prompt 1.5 s
// into its 1.6 s prefill and another just sent behind it, the first
// withdrawn leaves the second's 1.6 s of prefill ahead: no room for a
// third within 500 ms. Counting the 1.5 s as the second's left it 50 ms,
// and a burst went in beside it (branch review26).
func TestPrefillRoomAfterAWithdrawnWaitCountsNoPrefillDone(t *testing.T) {
	clock := time.Unix(1000, 0)
	b, err := New(Spec{URL: "http://x"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	const within = 500 * time.Millisecond
	for range 2 { // two lone 4,000-token starts in 1.6 s: 2,500 tokens/s
		b.Acquire()
		b.StartWaitingOf(clock, 4000)
		clock = clock.Add(1600 * time.Millisecond)
		b.FirstTokenOf(clock, 1600*time.Millisecond, 4000)
		b.ReleaseFed(clock, outcome.Success, 1600*time.Millisecond, 0)
	}
	b.Acquire()
	b.StartWaitingOf(clock, 4000) // the leg that will lose its race
	clock = clock.Add(1500 * time.Millisecond)
	b.Acquire()
	b.StartWaitingOf(clock, 4000)
	clock = clock.Add(50 * time.Millisecond)
	b.WithdrawnOf(clock, 1550*time.Millisecond, 4000)
	if got, _ := b.PrefillRoom(clock, 4000, within); got != 1 {
		t.Fatalf("one 4,000-token prompt waiting, just sent behind a withdrawn one: room %d, want 1 (1.6 s of its prefill ahead)", got)
	}
	// The rest of the wait counts from the withdrawal: 1.1 s on, 500 ms left.
	clock = clock.Add(1100 * time.Millisecond)
	if got, _ := b.PrefillRoom(clock, 4000, within); got != 2 {
		t.Fatalf("1.1 s after the withdrawal: room %d, want 2", got)
	}
}
