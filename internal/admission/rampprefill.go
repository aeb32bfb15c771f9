package admission

import (
	"fmt"
	"math"
	"time"
)

// The reported room (rampceiling.go) and the memory of prompt starts
// count slots; an engine also prefills the prompts it was sent one after
// another (or as one batch), so a burst of long prompts can take longer
// to start than the objective with most slots free. On one simulator
// prefilling 2,500 tokens/s, warm (its rate learned), a newcomer's five
// 2,000-word prompts went in at once beside one still prefilling: all
// five started 4.3 s after they were sent, and the established tenant's
// next two streams were refused 503 while its two running ones stalled
// 4 s (docs/RELIABILITY.md, branch burstprefill).
//
// Where the backends have learned their prefill rate, the pool reports
// how many of the requests of a prompt's size they can run with each new
// one starting within the interactive delay target beyond its own prefill
// (QueueConfig.PrefillCapacity, endpoint.Backend.PrefillRoom): what they
// run, plus as many more as their queued prefill leaves time for. The
// ramping tenant's base is never above it, whatever the slots say: the
// rest of its burst is held (parked, bounded by its deadline: refused 503
// with Retry-After at it) until the engines have started enough of what
// they were sent, and no probe goes past it. It is time, not slots, so
// the others' margins are not taken from it. Beyond its allowance it
// holds a ramping tenant's short prompts too; any other request only as a
// long prompt (below): a short prompt is granted as before and waits in
// the engine behind at most a delay target of prefill plus one prompt.

// An established tenant's own burst of long prompts went by slots alone:
// on the same simulator (static max_concurrency 16), a tenant sending a
// 10-word stream every 0.3 s sent six 2,000-word prompts at once; all six
// went in on free slots and started 2.4-4.9 s later, its short streams
// stalled behind them: 3 of its ~21 requests from then on started within
// the 2 s objective (docs/RELIABILITY.md, branch prefill2). So any tenant's long prompt (Request.LongPrefill) is held while the engines cannot start one more within the delay
// target (prefillFull): the rest of such a burst waits parked, as a
// ramping tenant's does (bounded by its deadline, refused 503 with
// Retry-After at it), and goes as the engines start what they were sent.
// It holds nothing while the queued prefill is within the delay target,
// so a tenant's steady long prompts, sent no faster than the engines
// prefill them, go at once; and a short prompt, whose own prefill delays
// nobody, never asks (the fast path is unchanged: no call of the hook).

// Which prompt is long is the caller's call (Request.LongPrefill): its own
// prefill at the engines' learned rate is a good part of the delay target
// (a fixed 1,024 tokens, branch prefill2, is 400 ms at 2,500 tokens/s and
// 50 ms at 20,000, and a 700-token prompt on an engine prefilling 500
// tokens/s is 1.4 s: branch prefill3), so the queue needs no rate.
//
// A held prompt is judged against what it has left of its objective
// (Request.Due), not the delay target alone: one more goes only if it
// starts within the delay target and by its objective beyond its own
// prefill (PrefillFit.Slots); and one that no engine can start by then at
// all (PrefillFit.Late) is refused at once with the Retry-After at which
// one sent afresh would start in time, not parked until its deadline:
// the queued prefill and its time left fall together, so waiting cannot
// bring it within its objective (branch prefill3; before it, held 0.8 s,
// the third of an established tenant's burst started at 2.48 s, past its
// 2 s objective, branch prefill2).

// PrefillFit is what the engines' queued prefill leaves one more request
// of a prompt's size (QueueConfig.PrefillCapacity).
type PrefillFit struct {
	// Slots is how many requests of the pool the backends can run with
	// one more starting within the delay target and the time left to its
	// objective, beyond its own prefill; 0: not priced.
	Slots int
	// Late: no backend can start one more by its objective at all (its
	// queued prefill and the prompt's own beyond the time left, on every
	// usable backend).
	Late bool
	// RetryAfter is when one sent afresh with the same time left would
	// go at once (0: now): when some backend's queued prefill is within
	// the budget Slots judges it by. A late refusal's Retry-After.
	RetryAfter time.Duration
}

// NoDue is the time left PrefillCapacity is asked with for a request
// without an objective (Request.Due zero).
const NoDue = time.Duration(math.MaxInt64)

// prefillFull reports whether a request of fit must wait for the engines'
// queued prefill: a long prompt while the pool, priced, has no room for
// one more within the delay target and its objective. late > 0: held,
// and it cannot start by its objective: refuse it with that Retry-After.
// capacity 0: no hold (an opened queue's grants).
func (q *Queue) prefillFull(fit rampFit, now time.Time, capacity int) (held bool, late time.Duration) {
	if !fit.long || capacity <= 0 || !q.rampOn() {
		return false, 0
	}
	f := q.prefillFit(fit, now)
	if f.Slots <= 0 || q.inUse+1 <= f.Slots {
		return false, 0
	}
	if f.Late {
		return true, max(f.RetryAfter, q.cfg.MinRetryAfter)
	}
	return true, 0
}

// prefillFit is QueueConfig.PrefillCapacity for a request of fit at now;
// zero when not priced.
func (q *Queue) prefillFit(fit rampFit, now time.Time) PrefillFit {
	if q.cfg.PrefillCapacity == nil {
		return PrefillFit{}
	}
	left := NoDue
	if !fit.due.IsZero() {
		left = fit.due.Sub(now)
	}
	f := q.cfg.PrefillCapacity(fit.prompt, left)
	f.Slots = max(f.Slots, 0)
	return f
}

// prefillLateRejection refuses w (or, w nil, r at arrival), a long prompt
// no engine can start by its objective, retry the wait until one sent
// afresh could.
func (q *Queue) prefillLateRejection(r Request, reason Reason, waited, retry time.Duration) *Rejection {
	rej := q.rejection(reason, r.Tenant, waited, 0)
	rej.RetryAfter = min(max(retry, q.cfg.MinRetryAfter), q.cfg.MaxRetryAfter)
	of := "model capacity"
	if q.cfg.Name != "" {
		of = "model '" + q.cfg.Name + "'"
	}
	rej.Message = fmt.Sprintf("the engines of %s have more prompts queued to prefill than this request's %d-token prompt leaves time for within its objective: retry after %s",
		of, int64(r.Prompt), waitText(rej.RetryAfter))
	return rej
}

// refuseLateArrival refuses r at arrival, a long prompt no engine can
// start by its objective (prefillFull's late).
func (q *Queue) refuseLateArrival(r Request, late time.Duration, now time.Time, capacity int) *Rejection {
	rej := q.prefillLateRejection(r, Saturated, 0, late)
	q.counters.rejected[rej.Reason]++
	q.promise(rej, r, now, capacity)
	return rej
}

// refuseLateHeld refuses the parked waiter w if it is a long prompt no
// engine can start by its objective any more (prefillFull's late).
func (q *Queue) refuseLateHeld(w *waiter, now time.Time, capacity int) {
	if _, late := q.prefillFull(w.req.rampFit(), now, capacity); late > 0 {
		q.refuseHeldLate(w, now)
	}
}

// refuseHeldLate refuses the parked waiter w, late (prefillFull), with
// the Retry-After of its retry: one sent afresh has its whole objective
// (its Due less its arrival), not what w has left of it, so it goes
// sooner than w would (branch prefillrate).
func (q *Queue) refuseHeldLate(w *waiter, now time.Time) {
	fresh := w.req.rampFit()
	fresh.due = fresh.due.Add(now.Sub(w.enqueued))
	q.dequeue(w)
	q.refuse(w, q.prefillLateRejection(w.req, Deadline, now.Sub(w.enqueued), q.prefillFit(fresh, now).RetryAfter))
}

// rampFit is what the ramp reckons the engines' room for: a request's KV
// need (kvNeed) and its prompt (promptNeed); for a long prompt
// (Request.LongPrefill), that it is one and its objective (Request.Due).
type rampFit struct {
	need, prompt float64
	long         bool
	due          time.Time
}

// rampFit is r's, each rounded as kvNeed rounds (a distinct fit is a call
// of each hook when the parked waiters are looked at).
func (r Request) rampFit() rampFit {
	f := rampFit{need: r.kvNeed(), prompt: roundNeed(r.Prompt)}
	if r.LongPrefill {
		f.long, f.due = true, r.Due
	}
	return f
}
