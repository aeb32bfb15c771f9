package endpoint

import "time"

// An engine that reports free slots and no queue can still start streams
// late: slow prefill (the sim stalls its running batch for a new prompt's
// prefill, and every stream sent after waits behind it; a real engine
// schedules prefill chunks first come, first served), KV thrashing, a
// machine slowed by load. Its reported room (ReportedRoom) then let a
// newcomer's burst in that the engine could not start in time: on a
// simulator prefilling 2,500 tokens/s, a newcomer's five 2,000-token
// prompts took 4 s of prefill, its five first tokens came 4.3 s after
// they were sent, and the established tenant's next two streams were
// refused 503 while its running two stalled 4 s (in half the runs; the
// KV room alone did the same). With this check the five are refused at
// their deadline and the tenant's two start in 0.02-0.19 s
// (docs/RELIABILITY.md, branch latebound). So the pool takes a
// backend that starts this gateway's streams late as full while it does
// (gateway.Pool.ReportedCapacity), as one that queues.
//
// Two kinds of evidence, both seen by this gateway:
//   - a stream waits for its first token past the prompt bound now
//     (stalledPast: 2 x the typical time to first token, at least
//     minBacklogWait): nothing says yet how long it will wait, and its
//     first token ends this at once. This process's own stalls count
//     here (unlike in backlogBound, which holds the whole backend): on a
//     machine at load 18-23 the discounted wait let a newcomer's five
//     long prompts past a stream stalled 0.5 s in one run of two, and a
//     stall of our own costs only a hold until the first token is read;
//   - a first token came later than after, the caller's bound (the pool's
//     interactive delay target: an engine that makes a stream wait as long
//     as the queue may make it wait spends the others' objective on every
//     stream sent to it), within a reading's trust (the Load's At to
//     Expires) before now. A late start shorter than that is not counted:
//     the late-start judge cannot tell a long prompt's prefill from a full
//     batch (ramp4's cut cannot either), and at 20,000 prefill tokens/s a
//     newcomer's 2,000-token prompt starts in 0.12 s, "late" beside
//     20 ms starts, while five more of them start in 0.5 s.

//
// A first token's lateness is judged against the backend's own prefill
// (branch prefillpred): a long prompt legitimately starts later than the
// delay target on a healthy engine (4,000 prompt tokens at 2,500-10,000
// tokens/s take 0.4-1.6 s), and took the room of a backend serving long
// prompts away while it was fine. Once the backend's prefill rate is
// learned (prefillRate), a start is late by what it took beyond its
// prompt's expected prefill, promptTokens / rate; before that, and for a
// prompt of unknown size, by its whole time to first token, as before.
// The rate is applied when the evidence is read, so a start judged late
// before the rate was known is excused once the rate shows it was the
// prefill: the first long prompt a backend starts holds its room until a
// second one teaches the rate (a newcomer's first long prompt on a slow
// engine, latebound's case, still takes the room while its burst waits).

// StartsLate reports whether the engine starts this gateway's streams
// late now (see above): a stream waiting past the prompt bound, or a
// first token later than after beyond its expected prefill within a
// reading's trust.
func (b *Backend) StartsLate(now time.Time, after time.Duration) bool {
	if stalled, _ := b.stalledPast(now, true); stalled {
		return true
	}
	l, ok := b.Load()
	if !ok {
		return false
	}
	b.mu.Lock()
	at, excess := b.lateAt, b.prefill.beyond(now, b.lateTTFT, b.lateTokens)
	b.mu.Unlock()
	return !at.IsZero() && excess > after && now.Sub(at) < l.Expires.Sub(l.At)
}

// noteLateLocked records a first token: the latest, unless one later
// beyond its expected prefill within a reading's trust came before it.
func (b *Backend) noteLateLocked(now time.Time, ttft time.Duration, promptTokens int64) {
	trust := time.Duration(0)
	if l, ok := b.Load(); ok {
		trust = l.Expires.Sub(l.At)
	}
	if b.prefill.beyond(now, ttft, promptTokens) >= b.prefill.beyond(now, b.lateTTFT, b.lateTokens) || now.Sub(b.lateAt) >= trust {
		b.lateAt, b.lateTTFT, b.lateTokens = now, ttft, promptTokens
	}
}

// prefillRate is a backend's prefill speed in prompt tokens a second (the
// gateway's estimate, prompt bytes / 4, so a JSON body's overhead is in
// the rate too), learned from the first tokens of long prompts
// (minPrefillTokens) that no other stream of this gateway waited beside
// (one admitted with others waits for their prefill too). An upper
// envelope: a faster start moves it half way, a slower one a tenth, so a
// start that queued unseen (another gateway's prompt ahead) lowers it
// little, and a rate underestimated excuses only a little more. Guarded by
// the backend's mutex; O(1) a first token.
//
// A rate ages: prefillRateTTL after its last sample it is forgotten (no
// rate: nothing priced, a prompt long by size alone) and the next sample
// starts it afresh. Kept for good, a rate learned at a bad moment (two
// slow lone starts under a burst, a cold engine) made every prompt of a
// few hundred tokens "long" pool-wide, and such prompts teach nothing
// (minPrefillTokens), so nothing ever corrected it (review37's Left;
// branch prefillrate).
type prefillRate struct {
	tokensPerSec float64
	samples      int       // learned from; the rate applies from minPrefillSamples
	at           time.Time // the last sample's time: the rate is forgotten prefillRateTTL after it
}

const (
	// minPrefillTokens: below it a start's fixed cost (a decode step, the
	// network, the gateway) outweighs the prefill: 1,024 tokens at 20,000
	// tokens/s are 50 ms beside 10-20 ms of it.
	minPrefillTokens = 1024
	// minPrefillSamples: one start is no rate yet (it may have queued).
	minPrefillSamples = 2
	prefillUp         = 0.5
	prefillDown       = 0.1
	// prefillRateTTL: a minute without a lone long start and the rate is
	// no longer evidence. A pool serving long prompts teaches it many
	// times a minute (a held long prompt starts nearly alone), so the
	// pricing it drives does not lapse under load; a pool that stopped
	// sending long prompts loses a rate it no longer confirms.
	prefillRateTTL = time.Minute
)

func (r *prefillRate) learn(now time.Time, ttft time.Duration, promptTokens int64, alone bool) {
	if !alone || promptTokens < minPrefillTokens || ttft <= 0 {
		return
	}
	if r.stale(now) {
		r.samples = 0 // forgotten: this sample starts it afresh
	}
	r.at = now
	sample := float64(promptTokens) / ttft.Seconds()
	switch {
	case r.samples == 0:
		r.tokensPerSec = sample
	case sample > r.tokensPerSec:
		r.tokensPerSec += prefillUp * (sample - r.tokensPerSec)
	default:
		r.tokensPerSec += prefillDown * (sample - r.tokensPerSec)
	}
	r.samples = min(r.samples+1, minPrefillSamples)
}

// stale reports whether the rate's last sample is prefillRateTTL or more
// before now (a rate never sampled is not stale: there is none).
func (r *prefillRate) stale(now time.Time) bool {
	return r.samples > 0 && now.Sub(r.at) >= prefillRateTTL
}

// learned is the rate in tokens a second at now once it applies; 0
// before, and once forgotten.
func (r *prefillRate) learned(now time.Time) float64 {
	if r.samples < minPrefillSamples || r.tokensPerSec <= 0 || r.stale(now) {
		return 0
	}
	return r.tokensPerSec
}

// beyond is how much later than its prompt's expected prefill a first
// token came: all of ttft while the rate is not learned (or forgotten)
// at now or the prompt's size is unknown.
func (r *prefillRate) beyond(now time.Time, ttft time.Duration, promptTokens int64) time.Duration {
	rate := r.learned(now)
	if rate <= 0 || promptTokens <= 0 {
		return ttft
	}
	expected := time.Duration(float64(promptTokens) / rate * float64(time.Second))
	return ttft - expected
}
