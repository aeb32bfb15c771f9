package gateway

import (
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Which prompts the queue prices against the engines' queued prefill
// (admission.Request.LongPrefill), and what that prefill leaves one more
// (admission.PrefillFit; branches burstprefill, prefill2, prefill3).
//
// A prompt is long by its own prefill time, not its size: a fixed 1,024
// tokens (branch prefill2) is 410 ms at 2,500 tokens/s, 50 ms at 20,000,
// while a 700-token prompt on an engine prefilling 500 tokens/s takes 1.4
// s, past the whole 500 ms delay target, and went unpriced. So a prompt
// is long when its prefill at the slowest learned rate of the pool's
// backends is at least longPrefillShare of the delay target (LateStart);
// before every backend learned a rate, from longPromptPrior tokens (and
// nothing is priced then anyway). A short prompt asks the queue nothing
// more.
//
// Only the backends routing may send it to now count (Usable, as
// PrefillCapacity counts them; a draining one is not in Backends): the
// rate of one ejected, probe-down or with its breaker open made every
// mid-sized prompt long pool-wide for as long as it was out, and its rate,
// taught by nothing while it was, for good (review37's Left; branch
// prefillrate). A rate is forgotten a minute after its last sample
// (endpoint.Backend.PrefillRate). The test reads each backend's state
// under its lock, as Ready just did for the same request, and one atomic.

// longPrefillShare: a prompt whose prefill takes this share of the delay
// target adds, each, that much to the start of everything sent after it:
// four of them sent at once are a whole target.
const longPrefillShare = 0.25

// longPromptPrior is the long prompt's size (estimated tokens) while a
// backend's rate is not learned: the size from which a start teaches the
// rate (endpoint's minPrefillTokens).
const longPromptPrior = 1024

// LongPrefill reports whether a prompt of prompt estimated tokens is long
// on this pool (see above).
func (p *Pool) LongPrefill(prompt float64) bool {
	if prompt <= 0 || p.LateStart <= 0 {
		return false
	}
	now := p.now()
	slowest := 0.0
	for _, b := range p.Backends {
		if !b.Usable(now) {
			continue
		}
		r := b.PrefillRate(now)
		if r <= 0 {
			return prompt >= longPromptPrior
		}
		if slowest == 0 || r < slowest {
			slowest = r
		}
	}
	if slowest == 0 {
		return prompt >= longPromptPrior
	}
	return prompt/slowest >= longPrefillShare*p.LateStart.Seconds()
}

// PrefillCapacity is what the pool's backends' queued prefill leaves one
// more request of prompt estimated tokens (0: unknown) with left to its
// objective (admission.NoDue: none) (admission.QueueConfig.PrefillCapacity):
//   - Slots: how many requests they can run with it starting within
//     LateStart, and within left, beyond its own prefill at each one's
//     learned rate, by the prompts this gateway has queued on each
//     (endpoint.PrefillSlots), plus the requests still running on
//     draining backends;
//   - Late: on none can it start within left at all (its queued prefill
//     and its own beyond left, its own alone within it: on a backend
//     where its own prefill alone is past left, no wait helps, and it is
//     judged by LateStart alone);
//   - RetryAfter: the least time until one sent afresh with left to its
//     objective would go at once on some backend (0: now): until that
//     backend's queued prefill is within min(LateStart, left - its own
//     prefill), the budget it is judged by. LateStart alone (prefill3)
//     was too soon for a prompt whose objective less its own prefill is
//     under the delay target: its retry at it was refused again (review37's
//     Left; branch prefillrate).
//
// Zero (not priced) when a usable backend has not learned its rate: its
// prefill is unknown, and the queue then goes by slots alone, as before
// (branch burstprefill). Read under the queue's lock, so it only loads
// atomics and each backend's state under its own lock, once.
func (p *Pool) PrefillCapacity(prompt float64, left time.Duration) admission.PrefillFit {
	if p.LateStart <= 0 {
		return admission.PrefillFit{}
	}
	now := p.now()
	total, usable, late := 0, false, true
	retry := time.Duration(0)
	for _, b := range p.Backends {
		if !b.Usable(now) {
			continue
		}
		inflight := int(b.Inflight())
		rate, queued := b.QueuedPrefill(now)
		if rate <= 0 {
			return admission.PrefillFit{}
		}
		own := time.Duration(max(prompt, 0) / rate * float64(time.Second))
		within := p.LateStart
		// Its own prefill alone past its time left: no wait brings it
		// within its objective here, so the objective is no reason to
		// hold or refuse it; the delay target alone judges it (review37:
		// a 3 s prompt under a 2 s objective was refused at once, and its
		// retry, whenever anything ran).
		reachable := left < admission.NoDue && own <= left
		if reachable {
			within = min(within, left-own)
		}
		slots := endpoint.PrefillSlots(inflight, rate, queued, int64(prompt), within)
		total = min(total, unlimited) + min(slots, unlimited)
		if !reachable || queued+own <= left {
			late = false
		}
		if wait := queued - within; !usable || wait < retry {
			retry = wait
		}
		usable = true
	}
	if !usable || total >= unlimited {
		return admission.PrefillFit{}
	}
	for _, b := range p.Draining {
		total += int(b.Inflight())
	}
	return admission.PrefillFit{Slots: total, Late: late, RetryAfter: max(retry, 0)}
}
