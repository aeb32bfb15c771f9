package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/h1client"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// The stages of one attempt of Forward, in the order it runs them: may
// another attempt start (mayRetry), which backend takes it (claim), the
// round trip (send), and what a transport error (failed) or a push-back
// (pushedBack) leaves for the next attempt.

// step tells Forward's loop what to do after claim.
type step int

const (
	stepGo   step = iota // the call holds a slot and a breaker permit: send
	stepNext             // this backend cannot take it; another may
	stepStop             // no backend is left
)

// sent is one attempt after its round trip: the call, its context and
// watchdog, and what the backend answered (a head, or a transport error).
// After a hedge race it describes the winning leg.
type sent struct {
	c      call
	actx   context.Context
	cancel context.CancelCauseFunc
	wd     *watchdog
	resp   *http.Response
	err    error
	at     time.Time // the attempt's start
	head   time.Time // when its round trip returned
}

// mayRetry reads the clock for an attempt after the first and says whether
// the request's total deadline and the retry budget allow it.
func (f *Forwarder) mayRetry(deadline time.Time, res *Result) (time.Time, bool) {
	now := f.opt.Now()
	if !now.Before(deadline) {
		res.Err = ErrTotalTimeout
		return now, false
	}
	if f.opt.Budget != nil && !f.opt.Budget.Withdraw(now) {
		res.Err = fmt.Errorf("%w: %w", ErrRetryBudget, res.Err)
		return now, false
	}
	res.Retries++
	return now, true
}

// unretry takes back what mayRetry counted and withdrew for a retry that
// found no backend to send it to.
func (f *Forwarder) unretry(res *Result) {
	res.Retries--
	if f.opt.Budget != nil {
		f.opt.Budget.Refund()
	}
}

// claim picks a backend not tried yet and takes a slot and a breaker
// permit on it. pushedBack: an earlier attempt's 429/503 is kept, so
// running out of backends is not this request's error. The retry of an
// attempt whose backend could not be reached, or closed a pooled
// connection under it (a backend being stopped whose slots admission
// still counts, as an unreachable one's), is picked by
// SelectAfterUnreachable when sel is an UnreachableSelector. A backend
// that left its pool between the pick and the slot (endpoint.Backend.Leave: a
// reload or a discovery change) is given its slot back and the pick made
// again, from the pool serving now: nothing was sent, no attempt is
// spent. One picked again although tried (a pinned call's retry,
// selector.retryPinned) goes ahead. A SlotClaimer's pick whose slot
// another request took between the pick and the claim is picked again
// (maxLostClaims).
func (f *Forwarder) claim(in *Request, sel Selector, tried *[]*endpoint.Backend, now time.Time, pushedBack bool, res *Result) (call, step) {
	var us UnreachableSelector
	if len(*tried) > 0 && (errors.Is(res.Err, ErrConnect) || errors.Is(res.Err, ErrStaleConnection)) {
		us, _ = sel.(UnreachableSelector)
	}
	lost := 0
	for {
		var b *endpoint.Backend
		var err error
		if us != nil {
			b, err = us.SelectAfterUnreachable(*tried)
		} else {
			b, err = sel.Select(*tried)
		}
		if b == nil {
			if res.Err == nil && !pushedBack {
				res.Err = err
			}
			return call{}, stepStop
		}
		b = f.avoidUnrescued(in, sel, *tried, b)
		again := slices.Contains(*tried, b)
		*tried = append(*tried, b)
		if in.CPUOnly {
			if !b.AcquireCPU() { // lost a race for its last CPU-side slot
				res.Err = ErrSaturated
				return call{}, stepNext
			}
			if b.Left() && !again {
				b.AbandonCPU()
				continue
			}
			return f.claimCPU(b, now, res)
		}
		if !acquire(sel, b) { // lost a race for its last slot
			if _, ok := sel.(SlotClaimer); ok && lost < maxLostClaims {
				// Picked within a bound another pick filled first: pick
				// again (another backend with room, or a wait for one).
				lost++
				*tried = (*tried)[:len(*tried)-1]
				continue
			}
			res.Err = ErrSaturated
			return call{}, stepNext
		}
		if b.Left() && !again { // read after the slot counts (Leave)
			b.Abandon()
			continue
		}
		done, ok := b.AllowCall(now)
		if !ok { // its breaker opened (or has no half-open slot) meanwhile
			b.Abandon()
			res.Err = ErrNoBackend
			return call{}, stepNext
		}
		c := call{b: b, done: done, work: in.Work, prompt: in.PromptTokens, kvNeed: in.KVNeed, busyEpoch: b.BusyEpoch()}
		b.AddWork(c.work)
		if in.Peek.Stream {
			c.waiting = true
			b.StartWaitingOf(now, c.wait())
		} else {
			c.prefill = b.StartPrefillOf(now, endpoint.Wait{Prompt: c.prompt})
		}
		return c, stepGo
	}
}

// maxLostClaims bounds the picks made again by one claim whose slot
// another request took between its pick and its claim (SlotClaimer):
// each loss means another request got a slot, so they are rare, and the
// bound keeps a limit moving between pick and claim from looping.
const maxLostClaims = 8

// acquire takes b's slot for a pick sel made: within the bound sel
// picked it by when sel claims its own picks (SlotClaimer), else within
// b's limit.
func acquire(sel Selector, b *endpoint.Backend) bool {
	if c, ok := sel.(SlotClaimer); ok {
		return c.Claim(b)
	}
	return b.Acquire()
}

// claimCPU is claim's permit for a CPU-side call (Request.CPUOnly) that
// holds a CPU-side slot on b: no engine slot, no work counted, never
// waiting for a first token.
func (f *Forwarder) claimCPU(b *endpoint.Backend, now time.Time, res *Result) (call, step) {
	done, ok := b.AllowCall(now)
	if !ok {
		b.AbandonCPU()
		res.Err = ErrNoBackend
		return call{}, stepNext
	}
	return call{b: b, done: done, cpu: true}, stepGo
}

// send starts the attempt at now and returns with the backend's head or
// error. A stream that may be hedged runs the race (hedge.go), which hands
// back the leg to go on with.
func (f *Forwarder) send(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend, c call, now, deadline time.Time, res *Result) sent {
	hedged := in.HedgeAfter > 0 && in.Peek.Stream
	actx, cancel, unlink := f.attemptContext(ctx, hedged)
	var wd *watchdog
	if hedged { // a first leg may run on past the request (hedge.go)
		endWithBackend(actx, c.b, cancel)
		wd = startWatchdog(f.opt.Timeouts.FirstByte, in.FirstToken, deadline, now, f.opt.Now, f.opt.AfterFunc, cancel)
	} else {
		g := &guarded{}
		cancel = g.hook.bind(c.b, cancel) // cancelWithBackend
		wd = &g.wd
		wd.start(f.opt.Timeouts.FirstByte, in.FirstToken, deadline, now, f.opt.Now, f.opt.AfterFunc, cancel)
	}
	if !hedged {
		resp, err := f.roundTrip(f.outbound(actx, c.b, in))
		return sent{c: c, actx: actx, cancel: cancel, wd: wd, resp: resp, err: err, at: now, head: f.opt.Now()}
	}
	// The hedge timer runs from the send, so a backend that never answers
	// the head is hedged too; the race hands back the stream to relay, or
	// the first attempt's head (or transport error) to handle as without
	// hedging.
	first := &leg{c: c, actx: actx, cancel: cancel, unlink: unlink, wd: wd, sent: now}
	l := f.race(ctx, in, sel, tried, first, deadline, res)
	s := sent{c: l.c, actx: l.actx, cancel: l.cancel, wd: l.wd, resp: l.resp, at: l.sent, head: l.head}
	if s.resp == nil {
		s.err = l.err
	}
	res.Backend = s.c.b
	return s
}

// failed records a transport error of attempt s (ttfb: how long its
// backend took) and says whether another backend may be tried: when the
// connection could not be made, or when a pooled keep-alive connection
// failed before one answer byte (the backend closing it as the request
// went out: stale) and the request is pure (as a 502 is retried) or did
// not leave whole (the backend cannot have taken it). A client that left
// ends the request.
func (f *Forwarder) failed(ctx context.Context, s sent, ttfb time.Duration, in *Request, res *Result) (retry bool) {
	s.wd.stop()
	cause := context.Cause(s.actx)
	s.cancel(nil)
	if errors.Is(ctx.Err(), context.Canceled) { // whatever the cause (a preempted job too)
		// The client left: not the backend's fault.
		s.c.end(f.opt.Now(), outcome.Success, ttfb, 0, true)
		res.Err = context.Canceled
		return false
	}
	now := f.opt.Now()
	res.Err = classifyTransportError(s.err, cause)
	if errors.Is(res.Err, ErrFirstByteTimeout) && !s.c.cpu {
		s.c.b.TimedOut(now, ttfb)
	}
	stale, unsent := h1client.Unanswered(s.err)
	if stale && errors.Is(res.Err, ErrUpstream) { // not when a timeout's cause came first
		// Closing an idle keep-alive connection is the backend's right
		// (its keep-alive timeout, a restart): not a failure for passive
		// health or the breaker (outcome.Ignored); with max_fails 3 a
		// backend whose keep-alive timeout is shorter than ours was
		// ejected by a few of these races. The connection is dropped,
		// so a backend that really crashed on the request fails the next
		// attempt on a new connection, which counts: at most one failure
		// per pooled connection goes uncounted.
		s.c.end(now, outcome.Ignored, ttfb, 0, false)
		res.Err = fmt.Errorf("%w: %w", ErrStaleConnection, s.err)
		return unsent || !in.SideEffects
	}
	s.c.end(now, outcome.Failure, ttfb, 0, false)
	return errors.Is(res.Err, ErrConnect)
}

// matchWaiting fits the backend's first-token wait to the answer, whose
// head came at now: the relay ends the wait at an event stream's first
// token; any other answer's wait ends here, and one the request did not
// expect as a stream starts so that the relay has one to end.
func (f *Forwarder) matchWaiting(c *call, resp *http.Response, at, now time.Time) {
	if c.cpu { // no first token to wait for: its time is learnt by nothing
		return
	}
	// A non-streamed prompt is prefilled by its head at the latest
	// (endpoint.Backend.StartPrefillOf); one answered as a stream now waits.
	c.b.EndPrefillOf(now, c.prefill)
	c.prefill = 0
	switch streamed := strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream"); {
	case streamed && !c.waiting:
		c.waiting = true
		c.b.StartWaitingOf(at, c.wait())
	case !streamed && c.waiting:
		c.b.EndWaitingOf(now, c.wait())
		c.waiting = false
	}
}

// declined ends attempt s (ttfb: how long its backend took) when its
// head asks for another backend and says so: a 429 or 503, busy, kept in
// busy with its Retry-After to relay if no other backend answers (and
// the last one asked, busy.final, for a request with side effects whose
// 503 has no Retry-After: it may have taken the request); a 502 while
// attempts are left, a failure, unless the request has side effects.
// Any other head is the answer.
func (f *Forwarder) declined(s sent, ttfb time.Duration, attemptsLeft bool, in *Request, busy *pushedBack, res *Result) bool {
	switch code := s.resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		s.wd.stop()
		wait, said := pushBackWait(s.resp.Header, f.opt.Now())
		s.c.end(f.opt.Now(), outcome.Busy, ttfb, wait, false)
		if !said { // compared as what the client would be told
			wait = blindBusyWait(s.c.b)
		}
		busy.keep(s, wait)
		busy.final = busy.final || in.SideEffects && code == http.StatusServiceUnavailable && headerGet(s.resp.Header, "Retry-After") == ""
		res.RetryAfter = busy.wait
		return true
	case code == http.StatusBadGateway && attemptsLeft && !in.SideEffects:
		s.wd.stop()
		s.c.end(f.opt.Now(), outcome.Failure, ttfb, 0, false)
		drain(s.resp.Body)
		s.cancel(nil)
		res.Err = fmt.Errorf("%w: status 502", ErrUpstream)
		return true
	}
	return false
}

// pushedBack is the 429/503 to relay (with its Retry-After) if no other
// backend answers: of those the backends answered, the one whose
// Retry-After (wait; blindBusyWait when it has none) ends first.
type pushedBack struct {
	resp   *http.Response
	cancel context.CancelCauseFunc
	b      *endpoint.Backend
	wait   time.Duration
	// final: no other backend may be asked (declined).
	final bool
}

// keep takes attempt s's answer, which asks for wait, unless the answer
// kept asks for less: the client is told the soonest any backend said it
// may serve again, not whichever backend was tried last (one saying 30 s
// after another said 2 s would send it away for 30). Ties take the later.
func (p *pushedBack) keep(s sent, wait time.Duration) {
	if p.resp != nil && p.wait < wait {
		s.resp.Body.Close()
		s.cancel(nil)
		return
	}
	p.drop()
	p.resp, p.cancel, p.b, p.wait = s.resp, s.cancel, s.c.b, wait
}

// drop closes the kept answer, if any.
func (p *pushedBack) drop() {
	if p.resp != nil {
		p.resp.Body.Close()
		p.cancel(nil)
		p.resp = nil
	}
}
