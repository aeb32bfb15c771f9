// A request's wait for its first token: when it starts and ends, how long
// the backend has stalled, and what the latency estimates learn from a
// first token, a timeout or a withdrawn hedge.

package endpoint

import (
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Wait is what a stream waiting for its first token holds on its backend
// while it waits: its prompt's estimated tokens, counted in the backend's
// queued prefill (PrefillRoom), and its KV need (admission.EstimateKVNeed),
// counted among the engine's waiting requests at their own sizes (Load's
// WaitingKVAtScrape); 0: unknown. Its start and every end take the same
// Wait, and the scrape reads the count and both sums under one lock
// (WaitingStreams): kept apart (an atomic KV sum beside the locked count,
// branch kvneed), a start or end between the two reads skewed a reading's
// mean KV need (branch review27).
type Wait struct {
	Prompt int64
	KV     int64
}

// FirstTokenOf ends a stream's wait (StartWaitingOf) and feeds the concurrency
// limit and the latency estimates the time
// to first token of a stream as soon as it is known, instead of at the
// stream's end: a signal that arrives after a whole generation (seconds to
// minutes) steers on load long gone. A backend that turned ten times slower
// would otherwise keep its fast estimate, and keep its share of new
// requests, for as long as its slow streams take to finish. The request is
// then ended with ReleaseFed.
//
// prompt says the first token came within max(2 x the backend's typical
// time to first token before it, minBacklogWait): the wait after which
// backlogBound takes a stream without one to be queued inside the engine
// behind a full batch. The admission queue's tenant ramp grows the slots it
// reckons from on such starts (admission.Ticket.FirstToken).
//
// w is the wait StartWaitingOf began with (its prompt about w.Prompt
// tokens long, 0: unknown): a late start is judged against the backend's
// own prefill rate, which a long prompt's start teaches (StartsLate).
func (b *Backend) FirstTokenOf(now time.Time, ttft time.Duration, w Wait) (prompt bool) {
	promptTokens := w.Prompt
	if box := b.limiter.Load(); box != nil {
		box.l.Observe(now, ttft, int(b.inflight.Load()), outcome.Success)
	}
	b.mu.Lock()
	prompt = ttft <= max(2*time.Duration(b.typical), minBacklogWait)
	// Every start is noted, a prompt one too: the prompt bound grows with
	// the typical start, which long prompts' prefill raises, and a short
	// prompt queued 600 ms beside them is late all the same (StartsLate).
	b.noteLateLocked(now, ttft, promptTokens)
	b.answers.expire(now)
	b.prefill.learn(now, ttft, promptTokens, b.prefillAloneLocked(promptTokens))
	b.rateBits.Store(math.Float64bits(b.prefill.learned(now)))
	b.rateAt.Store(b.prefill.at.UnixNano())
	b.endWaitLocked(now, w)
	b.learnLatencyLocked(now, ttft)
	b.answeredLocked()
	b.mu.Unlock()
	return prompt
}

// prefillAloneLocked reports whether a first token of a promptTokens
// prompt timed that prompt's prefill alone: the prompts of the other
// streams that waited beside it since none was waiting, and of the
// non-streamed ones queued ahead or sent meanwhile (answerprefill.go,
// in waitJoined even once taken out), add at most an
// eighth of its own. Not only the last stream still waiting: a burst's
// last start waited for the others' prefill too. Required alone outright
// (branch prefillpred), a backend whose tenants keep short streams going
// never learned its rate, since every long prompt waited beside a 10-token
// one, and its prefill was never priced (branch prefill2); an eighth more
// prefill errs the rate slow, the safe side.
func (b *Backend) prefillAloneLocked(promptTokens int64) bool {
	own := joinedTokens(promptTokens)
	others := max(b.waitJoined-own, 0)
	return others*8 <= own
}

// joinedTokens is what a stream of prompt tokens adds to waitJoined: a
// prompt of unknown size counts as a long one.
func joinedTokens(prompt int64) int64 {
	if prompt <= 0 {
		return minPrefillTokens
	}
	return prompt
}

// StartWaitingOf marks a stream sent to the backend as waiting for its
// first token, until FirstTokenOf, EndWaitingOf or WithdrawnOf (exactly
// one of them, passed the same w). Only streams: a non-streaming answer's
// first byte is the whole answer, legitimately seconds to minutes, and
// would make a busy backend look hung. The backend's queued prefill and
// waiting KV count w until the wait ends (PrefillRoom, WaitingStreams).
func (b *Backend) StartWaitingOf(now time.Time, w Wait) {
	b.mu.Lock()
	b.notePrefillingLocked(now)
	if b.waiting == 0 {
		b.waitSince = now
		// The non-streamed prompts still taken as prefilling are ahead
		// of it: counted among those it waits beside even once taken
		// out, before its first token (review32).
		b.waitJoined = b.answers.tokens
		b.waitTokens = 0
		b.waitKV = 0
	}
	b.waiting++
	b.waitJoined += joinedTokens(w.Prompt)
	b.waitTokens += max(w.Prompt, 0)
	b.waitKV += max(w.KV, 0)
	b.mu.Unlock()
}

// EndWaitingOf ends a wait StartWaitingOf began with w, for a stream that
// ended (or turned out not to be one) without a first token.
func (b *Backend) EndWaitingOf(now time.Time, w Wait) {
	b.mu.Lock()
	b.endWaitLocked(now, w)
	b.mu.Unlock()
}

func (b *Backend) endWaitLocked(now time.Time, w Wait) {
	b.leaveWaitLocked(w)
	if now.After(b.lastAnswer) {
		b.lastAnswer = now
	}
}

// leaveWaitLocked takes a stream of wait w out of the waiting ones.
// The queued prompt tokens start again from 0 when none waits, so an end
// told fewer tokens than its start (a path that does not know them)
// overstates the queued prefill only until the backend's waits all end.
func (b *Backend) leaveWaitLocked(w Wait) {
	if b.waiting > 0 {
		b.waiting--
	}
	b.waitTokens = max(b.waitTokens-max(w.Prompt, 0), 0)
	b.waitKV = max(b.waitKV-max(w.KV, 0), 0)
	if b.waiting == 0 {
		b.waitTokens, b.waitKV = 0, 0
	}
}

// Stalled is a lower bound on how long the backend's oldest waiting request
// has waited at now: the time since requests have been waiting without any
// of them getting its first token or answer; 0 when none waits. Latency
// learns only from requests that got an answer, so a backend that just
// turned slow, or hangs, looks as fast as before until its first slow
// answer lands (a hung one: never); Stalled sees it while it happens.
func (b *Backend) Stalled(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting == 0 {
		return 0
	}
	since := b.waitSince
	if b.lastAnswer.After(since) {
		since = b.lastAnswer
	}
	return max(now.Sub(since), 0)
}

// TimedOut records that a request waited d for its first byte or token and
// was cut: the backend's latency is at least d, whatever it answered
// before. The peak EWMA takes it at once, so latency-aware pickers steer
// away from a backend that hangs instead of probing it again at once.
func (b *Backend) TimedOut(now time.Time, d time.Duration) {
	b.mu.Lock()
	b.ewma.observe(now, d)
	b.mu.Unlock()
}

// WithdrawnOf ends an outstanding stream that was cancelled before its first
// token because another backend's answer started first (a hedge race).
// waited, how long it had waited, is only a lower bound of its latency
// (a censored sample), learned where it says something:
//   - the peak EWMA (routing) takes waited plus the current estimate when
//     that is higher: a latency known to exceed waited is expected to
//     exceed it by about its usual value (the memoryless estimate), so a
//     backend whose requests keep losing races gets dearer with each loss
//     and routing moves off it, instead of being taught a fast hedge
//     delay;
//   - the typical latency and its deviation (deadlines, hedge delays) take
//     waited itself, only when it is above them.
//
// The stream got no answer, so Stalled is not reset; the concurrency limit
// is not fed (no latency was measured). Only for a stream marked waiting
// (StartWaitingOf with w).
func (b *Backend) WithdrawnOf(now time.Time, waited time.Duration, w Wait) {
	b.inflight.Add(-1)
	b.signalFreed()
	b.endTrial()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leaveWaitLocked(w)
	if now.After(b.withdrawnAt) {
		b.withdrawnAt = now
	}
	if est := b.ewma.value(now); est < waited {
		b.ewma.observe(now, waited+est)
	}
	if w := float64(waited); b.typical > 0 && w > b.typical {
		b.deviation += typicalWeight * ((w - b.typical) - b.deviation)
		b.typical += typicalWeight * (w - b.typical)
	}
}
