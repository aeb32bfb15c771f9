package endpoint

import (
	"slices"
	"time"
)

// A non-streamed request's prompt is prefilled by the engine just as a
// stream's is, in the same first-come queue, so everything sent after it
// starts that much later; but it has no first token to say when its
// prefill ended: its first byte (vLLM's and SGLang's response head too) is
// its whole answer, seconds to minutes of decode later. Counted until its
// answer, a long answer's prompt would stay queued prefill long after the
// engine prefilled it; not counted at all, a burst of long non-streamed
// prompts went in beside a stream still prefilling as freely as short ones
// (docs/RELIABILITY.md, branch prefill2).
//
// So its prompt counts in the backend's queued prefill (PrefillRoom) from
// its send until the time the learned prefill rate says its prefill ended
// when the engine takes prompts first come, first served: its send plus
// the queued prefill ahead of it and its own prompt, over the rate. That
// errs long, as the rest of the rule does: the engine prefills no slower
// than the rate (a lone long prompt's start taught it), and what was
// queued ahead had started no later. Its response head or its end, if
// earlier (a refusal, a failure, an engine faster than learned), takes it
// out then, and the prefill the backend did before that counts for none of
// the others (as a withdrawn stream's, WithdrawnOf).
//
// Before the rate is learned nothing is priced, but the prompts count all
// the same, taken as prefilled at priorPrefillRate: uncounted, a stream
// sent behind a long non-streamed prompt started after both prefilled and
// taught the rate at half (the samples a stream's first token teaches
// must be its own prompt's, prefillAloneLocked; branch review32's Left),
// and once learned that low rate held long prompts that would have
// started in time. The prior is slow on purpose: an error that keeps a
// prompt counted too long only withholds a sample (the next lone long
// prompt teaches it) and, once a rate is learned, prices a little more
// queued prefill for a few seconds; one that drops it too early teaches a
// wrong rate for good (the rate moves a tenth towards a slower sample).
//
// A prompt whose prefill is negligible (under negligiblePrefill at the
// learned rate, or at the prior) is not counted: its send takes no lock
// (review32: one per non-streamed request, short ones too). Its prefill
// is the order of a decode step, which the queued prefill counts for
// nobody either, and beside a learning start it is far under the eighth
// of the start's own prompt prefillAloneLocked allows.

// priorPrefillRate is the prefill rate (prompt tokens a second) a
// backend's non-streamed prompts are counted at before it learned its own:
// below what GPU engines prefill (thousands to tens of thousands a
// second; the simulator's default 20,000), so it errs long (see above).
const priorPrefillRate = 1000

// negligiblePrefill: a non-streamed prompt prefilled in less is not
// counted (see above); 20 ms is two of the simulator's 10 ms decode steps.
const negligiblePrefill = 20 * time.Millisecond

// maxPendingAnswers bounds the non-streamed prompts a backend counts as
// prefilling (beyond it one is not counted: more than any engine's batch).
const maxPendingAnswers = 4096

// answerPrefill is a backend's non-streamed requests whose prompts are
// taken as still prefilling (StartPrefillOf), under the backend's lock.
type answerPrefill struct {
	pending []pendingAnswer
	tokens  int64     // their prompts' tokens
	next    time.Time // the earliest of their ends (zero: none pending)
	// doneAt is the latest end of one taken out: the prefill before it
	// went to that prompt (queuedPrefillLocked counts from it).
	doneAt time.Time
	ids    uint64
}

type pendingAnswer struct {
	id     uint64
	tokens int64
	done   time.Time // when its prefill is taken as ended
}

// expire takes out the prompts whose prefill is taken as ended by now.
// O(1) until the earliest end comes.
func (a *answerPrefill) expire(now time.Time) {
	if len(a.pending) == 0 || now.Before(a.next) {
		return
	}
	kept, next := a.pending[:0], time.Time{}
	for _, p := range a.pending {
		if !p.done.After(now) {
			a.tokens -= p.tokens
			if p.done.After(a.doneAt) {
				a.doneAt = p.done
			}
			continue
		}
		if next.IsZero() || p.done.Before(next) {
			next = p.done
		}
		kept = append(kept, p)
	}
	clear(a.pending[len(kept):])
	a.pending, a.next = kept, next
	if len(kept) == 0 {
		a.tokens = 0
	}
}

// StartPrefillOf counts the prompt (w.Prompt tokens) of a non-streamed
// request sent to the backend at now in its queued prefill until the
// prefill is taken as ended (see above) or EndPrefillOf, whichever comes
// first. It returns what EndPrefillOf takes (0: not counted: no prompt, a
// negligible one, too many pending).
func (b *Backend) StartPrefillOf(now time.Time, w Wait) (id uint64) {
	rate := b.PrefillRate(now)
	if rate <= 0 {
		rate = priorPrefillRate
	}
	if w.Prompt <= 0 || float64(w.Prompt) < rate*negligiblePrefill.Seconds() {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if learned := b.prefill.learned(now); learned > 0 {
		rate = learned // the lock-free read may be a start old
	}
	queued := b.queuedAtLocked(now, rate)
	a := &b.answers
	if len(a.pending) >= maxPendingAnswers {
		return 0
	}
	b.notePrefillingLocked(now)
	after := time.Duration((queued + float64(w.Prompt)) / rate * float64(time.Second))
	done := now.Add(min(after, time.Hour))
	a.ids++
	a.pending = append(a.pending, pendingAnswer{id: a.ids, tokens: w.Prompt, done: done})
	a.tokens += w.Prompt
	if b.waiting > 0 { // beside the waiting streams (prefillAloneLocked)
		b.waitJoined += w.Prompt
	}
	if a.next.IsZero() || done.Before(a.next) {
		a.next = done
	}
	return a.ids
}

// EndPrefillOf takes a prompt StartPrefillOf counted out at its request's
// response head or end, if its prefill is not taken as ended already.
func (b *Backend) EndPrefillOf(now time.Time, id uint64) {
	if id == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	a := &b.answers
	a.expire(now)
	for i, p := range a.pending {
		if p.id != id {
			continue
		}
		a.tokens -= p.tokens
		if now.After(a.doneAt) {
			a.doneAt = now
		}
		a.pending = slices.Delete(a.pending, i, i+1)
		a.next = time.Time{}
		for _, q := range a.pending {
			if a.next.IsZero() || q.done.Before(a.next) {
				a.next = q.done
			}
		}
		if len(a.pending) == 0 {
			a.tokens = 0
		}
		return
	}
}

// notePrefillingLocked marks now as the start of a span in which some
// prompt is prefilling, if none was (no stream waiting, no non-streamed
// prompt counted): the queued prefill counts what the backend prefilled
// from there.
func (b *Backend) notePrefillingLocked(now time.Time) {
	b.answers.expire(now)
	if b.waiting == 0 && len(b.answers.pending) == 0 {
		b.prefillSince = now
	}
}
