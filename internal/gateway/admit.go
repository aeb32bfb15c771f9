package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// unlimited stands for "no backend limit" in the queue's capacity.
const unlimited = 1 << 30

// Capacity is how many requests the pool may have in flight: the sum of its
// usable backends' concurrency limits (static, or adaptive, bounded by
// their peers' as routing bounds them: endpoint.PeerLimit), and the
// requests still running on backends draining out of it (they hold
// tickets, and must not shrink the room of the backends that stay). Read by the
// queue under its lock, so it only loads atomics and takes no other lock
// than each backend's state mutex and, when one of its windows is due, an
// adaptive limit's (admission.LimitConfig.Clock), which never waits for
// the queue's.
func (p *Pool) Capacity() int { return p.sumLimits((*endpoint.Backend).LimitAmong) }

// SpareCapacity is Capacity without the handover past the batch bound
// of each engine (endpoint.Backend.SlotLimitAmong): the requests the
// engines run at once rather than queue. Jobs fill no more than these,
// and a live request granted past them takes a job's slot back at once
// (admission.QueueConfig.SpareCapacity): with the handover open to jobs,
// they held the engines' queues and live requests waited there behind
// them (docs/BENCHMARKS.md §7h, §7i). Hedges keep the handover. Read under
// the queue's lock, as Capacity.
func (p *Pool) SpareCapacity() int { return p.sumLimits((*endpoint.Backend).SlotLimitAmong) }

// sumLimits is limit summed over the usable backends (unlimited if any
// has none), plus the requests still running on draining ones: Capacity
// and SpareCapacity differ only in the limit they sum.
func (p *Pool) sumLimits(limit func(b *endpoint.Backend, peer float64) int) int {
	now := p.now()
	total := 0
	peer := endpoint.PeerLimit(p.Backends, now)
	for _, b := range p.Backends {
		if !b.Usable(now) {
			continue
		}
		l := limit(b, peer)
		if l <= 0 {
			return unlimited
		}
		total += l
	}
	for _, b := range p.Draining {
		total += int(b.Inflight())
	}
	return total
}

// KnownCapacity is the part of Capacity the backends are known to have:
// the limits of the usable backends with a static max_concurrency (what
// the operator states they have, as Capacity reads them) and the requests
// still running on draining backends. An adaptive limit is left out: it
// can stand above the slots its backend has. The queue's tenant ramp
// reckons from at least this (admission.QueueConfig.KnownCapacity).
func (p *Pool) KnownCapacity() int {
	now := p.now()
	total := 0
	for _, b := range p.Backends {
		if b.Spec().MaxConcurrency > 0 && b.Usable(now) {
			total += b.Limit()
		}
	}
	for _, b := range p.Draining {
		total += int(b.Inflight())
	}
	return total
}

// ReportedCapacity is how many requests the pool's engines say they can
// run at once for this gateway now: each usable backend's reported room
// (endpoint.Backend.ReportedRoom: its engine's batch bound less other
// clients' load, never more than its KV cache holds, or the KV room alone
// for an engine that reports no bound, from a fresh scrape), or, for a
// backend whose room is accounted for but that queued in two scrapes in a
// row (full), the requests it runs for this gateway, plus the requests
// still running on draining backends. ok is false when no backend reports
// room, or when a usable backend accounts for no room at all (no bound and
// too few sequences running to estimate its KV, a stale scrape): its slots
// are unknown, and counting only what it runs made a ceiling that replaced
// the memory of prompt starts and stopped every probe short of its free
// slots (docs/RELIABILITY.md, branch review13). The queue then has no
// ceiling (admission.QueueConfig.ReportedCapacity), not a ceiling of what
// is in flight. A room reported as none, with none of this gateway's
// requests on the engines, is a ceiling of 0 (ok true): read as no
// ceiling, it let the memory of prompt starts and probes send a newcomer
// the engines said they had no room for (branch kvneed). A backend that starts this gateway's streams late
// (endpoint.Backend.StartsLate, past LateStart) is full too, whatever room
// it reports: its free slots did not start a stream in time (branch
// latebound). need is the request's estimated tokens (its queue cost: the
// prompt plus max_tokens): an engine that reports its KV cache's size has
// room for the newcomers of that size its free tokens hold
// (endpoint.Backend.ReportedRoomFor; branch kvexact); 0 counts newcomers
// like the running sequences. Read under the queue's lock, so it only
// loads atomics and each backend's state.
func (p *Pool) ReportedCapacity(need float64) (room int, ok bool) {
	now := p.now()
	total, reported := 0, false
	for _, b := range p.Backends {
		if !b.Usable(now) {
			continue
		}
		if room, ok := b.ReportedRoomFor(now, need); ok && !b.StartsLate(now, p.LateStart) {
			total += max(room, int(b.Inflight()))
			reported = true
			continue
		}
		if !b.ReportsRoom(now) {
			return 0, false
		}
		total += int(b.Inflight())
	}
	if !reported {
		return 0, false
	}
	for _, b := range p.Draining {
		total += int(b.Inflight())
	}
	return total, true
}

// sloOf is the pool's time-to-first-token objective for a class.
func (p *Pool) sloOf(c admission.Class) time.Duration {
	if c == admission.Interactive {
		return p.SLO.Interactive
	}
	return p.SLO.Batch
}

// expectedTTFT is the pool's typical time to first token once a request is
// sent (the mean of its usable backends' moving averages), which a queue
// wait must leave room for. Not the peak-EWMA latency the pickers use: it
// holds one slow sample for seconds, and a deadline cut by it refuses
// requests that would have started in time.
func (p *Pool) expectedTTFT(now time.Time) time.Duration {
	var sum time.Duration
	n := 0
	for _, b := range p.Backends {
		if l := b.TypicalLatency(); l > 0 && b.Usable(now) {
			sum += l
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}

// deadline is when a request must have left the queue so that its first
// token arrives within its class's objective (or sooner if the client asks:
// X-Sluice-Max-Wait: 2s or 2000ms). The queue's wait estimate is a mean
// whose tail runs about 1.5x longer, so admission holds it to two thirds of
// the budget left after the pool's expected time to first token (but never
// less than a third of the objective): requests it admits then start in
// time, and those it cannot are refused at once instead of served late.
// latest is when starting is of no use any more (the objective minus the
// expected time to first token): a waiter the queue let in is refused then,
// not at until, since the margin was for the estimate's error. slack is how
// much longer the client waits than for a first token (a non-streamed
// request's: answerSlack): both times are later by it, within what the
// client's X-Sluice-Max-Wait allows beyond the objective; used is the
// slack that was added (admission.Request.Slack).
func deadline(r *http.Request, start time.Time, objective, ttft, slack time.Duration) (until, latest time.Time, used time.Duration) {
	// The header was validated on arrival (readControlHeaders); the client
	// may ask for less than the objective (and its answer's slack), never
	// for more.
	if d, err := parseMaxWait(headerGet(r.Header, headerMaxWait)); err == nil && d > 0 {
		slack = min(slack, max(d-objective, 0))
		objective = min(objective, d) // as objectiveOf
	}
	wait := max((objective-ttft)*2/3, objective/3)
	return start.Add(wait + slack), start.Add(max(objective-ttft, wait) + slack), slack
}

// answerSlack is how much longer than a stream a request that does not
// stream may wait for a slot: its client sees nothing before the whole
// answer, so it waits for the answer's decode too. Its answer's bound in
// tokens times admission.answer_token_wait, at most
// admission.answer_max_wait; 0 for a stream and for a request that
// generates no answer (an embedding, a model endpoint). See
// internal/admission/answerwait.go.
func (x *exchange) answerSlack() time.Duration {
	if x.answer <= 0 || x.parsed.Peek.Stream {
		return 0
	}
	a := x.rt.Config.Admission
	if a.AnswerTokenWait <= 0 {
		return 0
	}
	per := a.AnswerTokenWait.D()
	if limit := a.AnswerMaxWait.D(); time.Duration(x.answer) > limit/per {
		return limit
	}
	return time.Duration(x.answer) * per
}

// objectiveOf is the time to first token r's client wants within the
// class's objective: less if it asks (X-Sluice-Max-Wait), never more.
func objectiveOf(r *http.Request, objective time.Duration) time.Duration {
	// The header was validated on arrival (readControlHeaders).
	if d, err := parseMaxWait(headerGet(r.Header, headerMaxWait)); err == nil && d > 0 && d < objective {
		return d
	}
	return objective
}

// setQueueTime tells the client how long its request waited in the
// gateway's queue (X-Sluice-Queue-Time, whole milliseconds; 0 for a request
// granted or refused at once), so a refusal after queueing can be told
// from one at arrival.
// The value is backed by vals, so setting it allocates nothing.
func setQueueTime(w http.ResponseWriter, vals *answerValues, d time.Duration) {
	vals.queued[0] = strconv.FormatInt(d.Milliseconds(), 10)
	w.Header()["X-Sluice-Queue-Time"] = vals.queued[:]
}

// queueTimeOf is the wait an admission error reports, for setQueueTime.
func queueTimeOf(err error) (time.Duration, bool) {
	var rej *admission.Rejection
	if errors.As(err, &rej) {
		return rej.Waited, true
	}
	return 0, false
}

// admit waits for a slot in the pool for model, or one of its fallbacks
// when the primary cannot serve in time and the caller allows it. It
// returns the pool that will serve and its ticket (nil when admission is
// off).
func (rt *Runtime) admit(ctx context.Context, pool *Pool, id identity, c *upstreamCall) (*Pool, *admission.Ticket, error) {
	req := admission.Request{Tenant: id.tenant, Weight: id.weight, Class: id.class, Cost: c.cost,
		Deadline: c.until, Latest: c.latest, Spare: id.preempt != nil, Preempt: id.preempt, Fingerprint: c.fingerprint,
		Streams: c.peek.Stream, KVNeed: c.kvNeed, Slack: c.slack, Prompt: float64(c.promptTokens()), Due: c.due} // its relay tells the ticket its first token (upstreamCall.started)
	candidates := []*Pool{pool}
	if id.fallback {
		for _, f := range pool.Fallbacks {
			if fp := rt.Pools[f]; fp != nil {
				candidates = append(candidates, fp)
			}
		}
	}
	var firstErr error
	for i, p := range candidates {
		if !p.Ready(p.now()) {
			if i == len(candidates)-1 && firstErr == nil {
				return p, nil, nil // nothing usable anywhere: the proxy says so
			}
			continue // straight to the next fallback
		}
		if p.queue == nil || c.cpuOnly { // a tokenizer call takes no engine slot (upstreamCall.cpuOnly)
			return p, nil, nil
		}
		req.LongPrefill = p.LongPrefill(req.Prompt) // this pool's engines' rates
		t, err := c.acquire(ctx, p.queue, req)
		if err == nil {
			return p, t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		var rej *admission.Rejection
		if !errors.As(err, &rej) || rej.Reason.HTTPStatus() == http.StatusTooManyRequests {
			// The client left, or the tenant is over its share: a fallback
			// model is no cure for either.
			return nil, nil, err
		}
	}
	return nil, nil, firstErr
}
