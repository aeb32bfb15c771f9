package endpoint

import (
	"testing"
	"time"
)

// A late first token is judged against the backend's own prefill rate
// once two long prompts that started alone taught it (branch
// prefillpred): on an engine prefilling 2,500 tokens/s a 4,000-token
// prompt starting in 1.6 s is its prefill, not a queue, and keeps the
// reported room; a short prompt starting in 600 ms, or a long one 600 ms
// past its prefill, is still late. The code before took every first token
// past the delay target (500 ms) as late, the long prompts' too.
func TestStartsLateBeyondItsOwnPrefill(t *testing.T) {
	at := time.Unix(1000, 0)
	clock := at
	b := mustNew(t, Spec{URL: "http://x"}, HealthPolicy{})
	read := func() { b.SetLoad(Load{BatchBound: 16, At: clock, Expires: clock.Add(3 * time.Second)}) }
	start := func(ttft time.Duration, tokens int64) {
		b.StartWaitingOf(clock, Wait{})
		clock = clock.Add(ttft)
		b.FirstTokenOf(clock, ttft, Wait{Prompt: tokens})
		read()
	}
	check := func(when string, want bool) {
		t.Helper()
		if got := b.StartsLate(clock, 500*time.Millisecond); got != want {
			t.Errorf("%s: starts late %v, want %v", when, got, want)
		}
	}
	read()
	for range 3 {
		start(20*time.Millisecond, 10) // short prompts: the typical start
	}
	check("short prompts started in 20 ms", false)
	start(1600*time.Millisecond, 4000)
	check("a first 4,000-token prompt in 1.6 s, no rate learned yet (the delay target, as before)", true)
	start(1600*time.Millisecond, 4000)
	check("a second in 1.6 s: the rate (2,500 tokens/s) learned, both were its prefill", false)
	start(800*time.Millisecond, 2000)
	check("a 2,000-token prompt in 0.8 s", false)
	start(2200*time.Millisecond, 4000)
	check("a 4,000-token prompt in 2.2 s: 600 ms past its prefill", true)
	clock = clock.Add(3 * time.Second)
	read()
	check("3 s later (a reading's trust)", false)
	start(600*time.Millisecond, 10)
	check("a short prompt in 600 ms", true)
	clock = clock.Add(3 * time.Second)
	read()
	start(450*time.Millisecond, 10)
	check("a short prompt in 450 ms (within the delay target, as before)", false)
}

// A long prompt that waited beside another stream of this gateway (a burst
// admitted together waits for all their prefills) teaches no rate: only
// lone starts do, so a burst's slow starts neither excuse themselves nor
// a later late start.
func TestPrefillRateLearnsFromLoneStartsOnly(t *testing.T) {
	var r prefillRate
	at := time.Unix(1000, 0)
	r.learn(at, 4*time.Second, 4000, false)
	r.learn(at, 4*time.Second, 4000, false)
	if got := r.beyond(at, 4*time.Second, 4000); got != 4*time.Second {
		t.Errorf("after two starts beside others: %v beyond the prefill, want all 4s (no rate)", got)
	}
	r.learn(at, 500*time.Millisecond, 500, true) // short: its fixed cost outweighs the prefill
	r.learn(at, 500*time.Millisecond, 500, true)
	if r.samples != 0 {
		t.Errorf("short prompts taught %d samples, want none", r.samples)
	}
	r.learn(at, time.Second, 5000, true)
	r.learn(at, time.Second, 5000, true)
	r.learn(at, 5*time.Second, 5000, true) // one that queued unseen moves the rate a tenth
	if got := r.tokensPerSec; got < 4500 || got > 5000 {
		t.Errorf("rate %.0f tokens/s, want about 4,600 (an upper envelope of 5,000)", got)
	}
}

// A burst's last start is no lone start (branch review25): three 2,000-
// token prompts admitted together on an engine prefilling 2,500 tokens/s
// start at 0.8, 1.6 and 2.4 s, and when the last one's token comes it is
// the only stream still waiting. It waited behind the other two's
// prefill, so it shows a third of the rate (833 tokens/s), and two such
// bursts taught that rate to prefillpred's code: a 2,000-token prompt
// that then started alone in 2.4 s, 1.6 s past its prefill, was excused.
// Only a stream no other joined while it waited teaches the rate.
func TestPrefillRateNotLearnedFromABurstsLastStart(t *testing.T) {
	clock := time.Unix(1000, 0)
	b := mustNew(t, Spec{URL: "http://x"}, HealthPolicy{})
	b.SetLoad(Load{BatchBound: 16, At: clock, Expires: clock.Add(time.Hour)})
	for range 2 {
		for range 3 {
			b.StartWaitingOf(clock, Wait{})
		}
		for k := 1; k <= 3; k++ {
			b.FirstTokenOf(clock.Add(time.Duration(k)*800*time.Millisecond), time.Duration(k)*800*time.Millisecond, Wait{Prompt: 2000})
		}
		clock = clock.Add(10 * time.Second)
	}
	b.StartWaitingOf(clock, Wait{})
	clock = clock.Add(2400 * time.Millisecond)
	b.FirstTokenOf(clock, 2400*time.Millisecond, Wait{Prompt: 2000})
	if !b.StartsLate(clock, 500*time.Millisecond) {
		b.mu.Lock()
		rate := b.prefill
		b.mu.Unlock()
		t.Errorf("a lone 2,000-token start in 2.4 s not late: rate %.0f tokens/s from %d samples, learned from bursts' last starts",
			rate.tokensPerSec, rate.samples)
	}
}
