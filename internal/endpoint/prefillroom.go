package endpoint

import (
	"math"
	"time"
)

// A backend's free slots are no promise that a stream sent now starts
// soon: an engine prefills the prompts it was sent before, and a burst of
// long prompts takes their sum. On a simulator prefilling 2,500 tokens/s
// (warm, its rate learned), a newcomer's five 2,000-word prompts sent at
// once beside one still prefilling started 4.3 s after they were sent,
// and the established tenant's next two streams were refused 503 while
// its running two stalled 4 s (docs/RELIABILITY.md, branch burstprefill).
//
// So once the backend's prefill rate is learned (prefillRate), the
// prompts of the streams this gateway has waiting there for a first token
// (StartWaitingOf), and of its non-streamed requests there not yet taken
// as prefilled (StartPrefillOf, answerprefill.go), are its queued
// prefill: their tokens over the rate,
// less the time since the backend last started a stream, began to
// prefill, had a wait withdrawn or a non-streamed prompt taken out (what
// it has prefilled since, at most: the work before a first token went to
// that stream's prompt, or the batch's, and before a withdrawal to the
// withdrawn prompt, which leaves the sum; so counting from there errs
// long). A stream sent now starts that much later than its own
// prefill, and a burst's k-th stream also after the k-1 before it.

// PrefillRoom is how many streams of promptTokens each (0: unknown) this
// gateway can still send the backend now so that each starts within
// within beyond its own prefill, counting what it already runs:
// Inflight plus as many more as the backend's queued prefill and the
// prompts before each in the burst leave within within (the first goes
// if the queued prefill leaves it any time; math.MaxInt for a prompt of
// unknown size then). priced is false while the backend's prefill rate is
// not learned: its prefill is not priced. O(1), under the backend's lock.
func (b *Backend) PrefillRoom(now time.Time, promptTokens int64, within time.Duration) (slots int, priced bool) {
	inflight := int(b.Inflight())
	rate, queued := b.QueuedPrefill(now)
	if rate <= 0 {
		return 0, false
	}
	return PrefillSlots(inflight, rate, queued, promptTokens, within), true
}

// QueuedPrefill is the backend's learned prefill rate in prompt tokens a
// second (0: not learned: nothing priced) and how long its queued prefill
// (see above) takes at it now. O(1), under the backend's lock.
func (b *Backend) QueuedPrefill(now time.Time) (rate float64, queued time.Duration) {
	b.mu.Lock()
	rate, tokens := b.queuedPrefillLocked(now)
	b.mu.Unlock()
	if rate <= 0 {
		return 0, 0
	}
	return rate, time.Duration(tokens / rate * float64(time.Second))
}

// PrefillSlots is PrefillRoom for a backend running inflight requests,
// prefilling rate tokens a second with queued of prefill ahead: inflight
// plus as many more streams of promptTokens each as start within within
// beyond their own prefill (none when within is below queued).
func PrefillSlots(inflight int, rate float64, queued time.Duration, promptTokens int64, within time.Duration) int {
	budget := rate * (within - queued).Seconds()
	switch {
	case budget < 0:
		return inflight
	case promptTokens <= 0:
		return math.MaxInt
	}
	more := 1 + min(budget/float64(promptTokens), float64(math.MaxInt32))
	return inflight + int(more)
}

// queuedPrefillLocked is the backend's learned prefill rate (0: not
// learned) and the prompt tokens it is yet to prefill for this gateway's
// waiting streams at now, at that rate.
func (b *Backend) queuedPrefillLocked(now time.Time) (rate, queued float64) {
	rate = b.prefill.learned(now)
	if rate <= 0 {
		return 0, 0
	}
	return rate, b.queuedAtLocked(now, rate)
}

// PrefillRate is the backend's learned prefill rate in prompt tokens a
// second at now; 0 while it is not learned, and once forgotten (no
// sample for prefillRateTTL: latestart.go). Lock-free.
func (b *Backend) PrefillRate(now time.Time) float64 {
	rate := math.Float64frombits(b.rateBits.Load())
	if rate <= 0 || now.Sub(time.Unix(0, b.rateAt.Load())) >= prefillRateTTL {
		return 0
	}
	return rate
}

// queuedAtLocked is the prompt tokens the backend is yet to prefill for
// this gateway at now if it prefills rate tokens a second.
func (b *Backend) queuedAtLocked(now time.Time, rate float64) float64 {
	b.answers.expire(now)
	tokens := b.answers.tokens
	if b.waiting > 0 {
		tokens += b.waitTokens
	}
	if tokens <= 0 {
		return 0
	}
	// A withdrawn wait (a hedge's loser) took its prompt out, so the
	// prefill before it is counted for none of the others either; nor
	// the prefill before a non-streamed prompt was taken out
	// (answerprefill.go).
	since := b.prefillSince
	for _, t := range [...]time.Time{b.lastAnswer, b.withdrawnAt, b.answers.doneAt} {
		if t.After(since) {
			since = t
		}
	}
	done := rate * max(now.Sub(since), 0).Seconds()
	return max(float64(tokens)-done, 0)
}
