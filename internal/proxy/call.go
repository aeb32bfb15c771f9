// An admitted upstream attempt (call): its backend slot and breaker
// outcome, ended once, and its cut when the backend is retired.

package proxy

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// call is one admitted upstream attempt: the backend's in-flight slot and
// its breaker's pending outcome, ended together exactly once.
type call struct {
	b    *endpoint.Backend
	done breaker.Done
	fed  bool // the first token fed the backend's limit (relay sets it on its copy)
	// waiting: a stream marked waiting for its first token (StartWaitingOf);
	// FirstTokenOf (fed) or end ends the wait.
	waiting bool
	// prompt is the request's estimated prompt tokens (Request.PromptTokens),
	// which its wait counts in the backend's queued prefill
	// (endpoint.Backend.StartWaitingOf); its end takes the same out.
	prompt int64
	// prefill: a non-streamed request's prompt counted in the backend's
	// queued prefill until its head or end (endpoint.Backend.StartPrefillOf;
	// 0: none).
	prefill uint64
	work    int64
	kvNeed  int64 // counted on the backend while waiting (Request.KVNeed)
	cpu     bool  // a CPU-side slot (Request.CPUOnly): see endCPU
	// busyEpoch is the backend's push-back count when the call started:
	// its success ends a push-back that came before it (AnsweredSince).
	busyEpoch uint64
}

// wait is what the call holds on its backend while its stream waits for
// its first token (endpoint.Wait): its start and every end pass the same.
// Only a waiting call holds its KV need there (withdrawn ends any call).
func (c *call) wait() endpoint.Wait {
	w := endpoint.Wait{Prompt: c.prompt}
	if c.waiting {
		w.KV = c.kvNeed
	}
	return w
}

// end records the attempt's outcome. clientGone marks attempts cut short by
// the client: they say nothing about the backend's health.
func (c call) end(now time.Time, out outcome.Outcome, latency, retryAfter time.Duration, clientGone bool) {
	if c.cpu {
		c.endCPU(now, out, latency, retryAfter, clientGone)
		return
	}
	c.b.AddWork(-c.work)
	c.b.EndPrefillOf(now, c.prefill)
	if c.waiting && !c.fed {
		c.b.EndWaitingOf(now, c.wait())
	}
	if c.fed {
		c.b.ReleaseFed(now, out, latency, retryAfter)
	} else {
		c.b.Release(now, out, latency, retryAfter)
	}
	if out == outcome.Success && !clientGone {
		c.b.AnsweredSince(c.busyEpoch)
	}
	if c.done == nil {
		return
	}
	if clientGone {
		out = outcome.Ignored // nothing learnt about the backend's health
	}
	c.done(now, out, latency)
}

// endAnswer is end for a non-streamed answer of outputTokens tokens,
// whose latency is its whole generation (endpoint.Backend.ReleaseAnswer).
func (c call) endAnswer(now time.Time, out outcome.Outcome, whole time.Duration, outputTokens int, clientGone bool) {
	if c.fed || c.waiting || c.cpu { // not a plain answer after all: as end
		c.end(now, out, whole, 0, clientGone)
		return
	}
	c.b.AddWork(-c.work)
	c.b.EndPrefillOf(now, c.prefill)
	c.b.ReleaseAnswer(now, out, whole, outputTokens)
	if out == outcome.Success && !clientGone {
		c.b.AnsweredSince(c.busyEpoch)
	}
	if c.done == nil {
		return
	}
	if clientGone {
		out = outcome.Ignored
	}
	c.done(now, out, whole)
}

// endCPU is end for a CPU-side call: its slot freed, its failures and
// push-backs counted by the backend's health and its breaker, its success
// by neither (outcome.Ignored for the breaker): a tokenizer answering in
// milliseconds says nothing of the engine, and thousands of them would
// dilute the breaker's failure and slow-call rates of the calls that do.
func (c call) endCPU(now time.Time, out outcome.Outcome, latency, retryAfter time.Duration, clientGone bool) {
	c.b.ReleaseCPU(now, out, retryAfter)
	if c.done == nil {
		return
	}
	if clientGone || out == outcome.Success {
		out = outcome.Ignored
	}
	c.done(now, out, latency)
}

// endWithBackend cancels an attempt's context when its backend is retired
// (its drain ended); the hook is freed when the attempt ends first. It is
// for an attempt whose end nobody else owns (a hedge race's legs, one of
// which may outlive its request): a hook on actx frees the backend's, on a
// goroutine context.AfterFunc starts when actx ends.
func endWithBackend(actx context.Context, b *endpoint.Backend, cancel context.CancelCauseFunc) {
	stop := context.AfterFunc(b.Context(), func() { cancel(ErrBackendRetired) })
	context.AfterFunc(actx, func() { stop() })
}

// cancelWithBackend is endWithBackend for an attempt Forward ends itself,
// on every path, with the cancel it returns: that cancel takes the
// attempt off its backend's retirement list first (endpoint.RetireHook,
// two allocations and no context registration), so the attempt costs
// neither a hook on its own context nor the goroutine that hook starts at
// its end (one per request).
func cancelWithBackend(b *endpoint.Backend, cancel context.CancelCauseFunc) context.CancelCauseFunc {
	return (&retireHook{}).bind(b, cancel)
}

// bind is cancelWithBackend on a zero hook the caller allocated (with the
// attempt's watchdog: guarded).
func (h *retireHook) bind(b *endpoint.Backend, cancel context.CancelCauseFunc) context.CancelCauseFunc {
	h.b = b
	h.Cancel, h.Cause = cancel, ErrBackendRetired
	if !b.HookRetire(&h.RetireHook) {
		cancel(ErrBackendRetired) // retired already
	}
	return h.end
}

// guarded is the watchdog and retirement hook of an attempt Forward ends
// itself, in one allocation instead of two: both live as long as the
// attempt (the timer's callback and the returned cancel hold them).
type guarded struct {
	wd   watchdog
	hook retireHook
}

// retireHook is an attempt's endpoint.RetireHook with its backend.
type retireHook struct {
	endpoint.RetireHook
	b *endpoint.Backend
}

// end takes the attempt off the list, then ends it with cause.
func (h *retireHook) end(cause error) {
	h.b.UnhookRetire(&h.RetireHook)
	h.Cancel(cause)
}
