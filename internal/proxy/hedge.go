package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// Hedging ("The Tail at Scale", deferred hedges): a stream whose first
// token has not come Request.HedgeAfter (the tail of the pool's time to
// first token) after it was sent is sent to a second backend as well, and
// the client gets whichever stream starts first. The timer runs from the
// send, as gRPC's hedging does, not from the response head: a backend that
// accepts and then hangs without a head is hedged like one whose tokens
// are late. A backend that just turned ten times slower (or hung) is only
// found out by the requests it holds, and p2c stops sending it more within
// a first token's time, but those few requests would each miss the
// objective by the slow backend's whole latency (a hung one's by the
// first-token bound); a hedge bounds them at HedgeAfter plus a healthy
// backend's time to first token. Nothing has reached the client before the
// race is decided, so the switch is invisible to it. A first attempt whose
// head is not a 200 stream, or whose round trip fails, ends the race when
// no hedge races it; Forward then handles it as without hedging (busy
// answers, retries before the first byte).
//
// A hedge is a second request, so it only uses capacity nobody else wants
// (Envoy's and gRPC's hedging policies bound it the same way):
//   - spare capacity: Request.HedgeSlot must grant a slot, which the
//     gateway does only while nothing waits in the model's admission queue
//     and a slot is free, and takes back (cancelling the hedge) the moment
//     a live request would have to wait; the hedge's backend must have a
//     slot free under its own limit;
//   - a budget: hedges racing stay within HedgeBudget (a share of the
//     requests in flight, with a floor), and need an attempt left.
//
// The losing hedge is cancelled at once. A losing first attempt runs on in
// the winner's spare slot to its own first token, at most until the
// request ends or a live request takes the slot back: that sample is what
// shows how slow its backend is (cancelled at the race's end, it would
// only teach the hedge delay, its backend would look idle and cheap, and
// p2c would keep sending it a share of the traffic, each request paying a
// hedge). One still without a response head runs on past the request's
// end, to its own first-byte/first-token timeout, for the same reason: a
// hung backend must be charged the timeout that ejects it. A leg cut
// before its first token is charged its wait as a lower bound
// (endpoint.Backend.WithdrawnOf), never a failure; a leg that hits its own
// timeout is a failure. Every loser ended after the race is ended on a
// goroutine of Options.Owner, which shutdown joins (cancelling those still
// running when its grace is over), so none outlives the process's
// shutdown.
//
// This file runs the race and ends its legs; hedgestart.go decides when a
// hedge is due and admits one.

// Owner runs the goroutines that outlive a request: a race's losers,
// ended after the race (a first attempt running on, possibly past the
// request's end). Go runs fn on a goroutine the owner counts until fn
// returns; stop ends when the owner stops waiting for it (shutdown's
// grace is over), and fn's leg is then cancelled. The gateway's
// Background is one: shutdown joins it.
type Owner interface {
	Go(fn func(stop context.Context))
}

// HedgeSlot takes a slot the model can spare for a hedge: ok is false when
// requests wait in its queue or none is free. preempt is called (at most
// once, possibly on another goroutine) when a live request needs the slot
// back; release gives it back and must be called exactly once when ok.
type HedgeSlot func(preempt func()) (release func(), ok bool)

// HedgeOutcome says what hedging did for one request.
type HedgeOutcome uint8

const (
	HedgeNone       HedgeOutcome = iota // no hedge was due
	HedgeWon                            // a hedge was sent and its stream relayed
	HedgeLost                           // a hedge was sent; the first attempt's stream was relayed
	HedgeNoCapacity                     // due, but no spare slot (queue or backends)
	HedgeNoBudget                       // due, but the hedge budget or the attempts were spent
)

// errHedgeLost cancels the attempt that lost a race; errHedgePreempted a
// hedge whose spare slot a live request took back. Neither is the
// backend's fault.
var (
	errHedgeLost      = errors.New("proxy: another backend's stream started first")
	errHedgePreempted = errors.New("proxy: hedge slot taken back by a live request")
	// errShutdown cancels a loser still running when shutdown's grace
	// ends (Owner).
	errShutdown = errors.New("proxy: gateway shutting down")
	// errNoStream marks a first attempt whose head is not a 200 stream:
	// out of the race, its answer is Forward's to handle.
	errNoStream = errors.New("proxy: answer is not an event stream")
)

// leg is one upstream attempt racing for the first token.
type leg struct {
	c      call
	actx   context.Context
	cancel context.CancelCauseFunc
	// unlink stops the request's end from cancelling a first attempt
	// (Forward.attemptContext); nil for a hedge.
	unlink func() bool
	// phase is legHeadless until its round trip returns (legHead, set by
	// its own goroutine) or the race unlinks it while headless
	// (legUnlinked); whichever comes first wins, so a head that arrives
	// just after the unlink ties the attempt to the request again.
	phase atomic.Int32
	req   context.Context // the request's context (to relink)
	wd    *watchdog
	resp  *http.Response
	sent  time.Time // when the attempt started (its wait, if it loses)
	head  time.Time // when its round trip returned (head or error)
	first []byte    // the first chunk read, replayed to the relay
	// err is why the leg has no first token: its round trip's error (resp
	// nil), errNoStream (resp is another answer), or the first read's.
	err error
	// reported: its goroutine has sent it on the race's channel.
	reported bool
	hedge    bool // a hedge, counted in the hedge budget until it is settled
	settled  bool // its part in the race is over (settle)
	ended    bool // its call has ended (a failed hedge, ended in the race)
	// slot is the spare slot a hedge took (Request.HedgeSlot); after the
	// race, the losing first attempt's while it runs on. nil without one.
	slot *spareSlot
}

// A first attempt's phases (leg.phase).
const (
	legHeadless int32 = iota // no response head yet, tied to the request
	legHead                  // its round trip returned
	legUnlinked              // lost while headless: runs on past the request
)

// spareSlot is a slot from Request.HedgeSlot and the leg whose request
// its preemption cancels (none once that leg is relayed to the client).
type spareSlot struct {
	release func()
	holder  atomic.Pointer[leg]
	once    sync.Once
}

func (s *spareSlot) preempt() {
	if l := s.holder.Load(); l != nil {
		l.cancel(errHedgePreempted)
	}
}

func (s *spareSlot) free() {
	if s != nil {
		s.holder.Store(nil)
		s.once.Do(s.release)
	}
}

// isEventStream reports whether resp is a streamed answer worth racing.
func isEventStream(resp *http.Response) bool {
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream")
}

// peek reads l's first chunk (the first token, for an inference stream)
// and reports l on done. While the leg is held to a first-token deadline
// (its watchdog's, set from Request.FirstToken before the leg started),
// keep-alive comments (": ping", sent by hosted APIs while a request
// queues) are no token: it reads on past them, so a backend that pings
// while it queues loses the race to one that generates, is hedged as a
// silent one is, and is cut at the deadline (the relay holds the pings
// too: relayStream's holdPings). Every API the race runs for is read so:
// chat and legacy text completions, whose first data is a token (the
// gateway hedges no Responses call nor transcription, Runtime.hedgeAfter).
// Past the buffer (4 KiB of comments) it reports what it has.
func (l *leg) peek(done chan<- *leg) {
	buf := make([]byte, 4<<10)
	pings := l.wd != nil && l.wd.firstTokenDue()
	n, err := l.resp.Body.Read(buf)
	for err == nil && (n == 0 || pings && n < len(buf) && commentsOnly(buf[:n])) { // a zero read is no token yet
		var m int
		m, err = l.resp.Body.Read(buf[n:])
		n += m
	}
	l.first, l.err = buf[:n], err
	if n > 0 && (err == nil || !pings || !commentsOnly(buf[:n])) {
		l.err = nil
	}
	done <- l
}

// commentsOnly reports whether p, the start of an event stream, holds
// nothing but comment lines (": ping") and blank lines so far, the last
// line possibly cut.
func commentsOnly(p []byte) bool {
	for len(p) > 0 {
		if p[0] != ':' && p[0] != '\n' && p[0] != '\r' {
			return false
		}
		i := lineEnd(p)
		if i < 0 {
			return true // a comment cut by the read
		}
		p = p[i+1:]
	}
	return true
}

// sendFirst sends the first attempt, req, and, when its head is a 200
// stream, peeks its first token; any other head, or a failed round trip,
// is reported as a failed leg carrying it.
//
// req is built (outbound) by the goroutine that starts this one, which
// still holds the request's body: built here, a leg started just before
// the race ended could read the body after the request released it to the
// pool (and send another request's bytes).
func (f *Forwarder) sendFirst(l *leg, req *http.Request, up *upstream, done chan<- *leg) {
	resp, err := f.roundTrip(req, up)
	l.head = f.opt.Now()
	if !l.phase.CompareAndSwap(legHeadless, legHead) {
		// Unlinked a moment before its head came: an attempt with a head
		// runs on only while its request does, as if it had come first.
		context.AfterFunc(l.req, func() { l.cancel(context.Cause(l.req)) })
	}
	switch {
	case err != nil:
		l.err = err
	case !isEventStream(resp):
		l.resp, l.err = resp, errNoStream
	default:
		l.resp = resp
		l.peek(done)
		return
	}
	done <- l
}

// replay gives the relay the peeked chunk, then the rest of the body.
type replay struct {
	first []byte
	err   error
	rest  io.ReadCloser
}

func (r *replay) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		if r.first = r.first[n:]; len(r.first) == 0 {
			r.first = nil // the peek's 4 KiB buffer goes with it, not held by the stream
		}
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.rest.Read(p)
}

func (r *replay) Close() error { return r.rest.Close() }

// race sends primary and waits for its first token; when that is not in
// HedgeAfter after the send and a hedge may be sent, it starts one on
// another backend and keeps the stream that starts first. It returns the
// leg to relay (its body replays the peeked chunk), or, when every leg
// failed, the primary with its head or error for Forward to handle.
// Every other leg is ended here, or by a goroutine that waits for its
// report: a cancelled leg reports promptly; a first attempt running on
// (see above) reports at its first token, its watchdog, the request's end
// or its slot's preemption, whichever comes first.
func (f *Forwarder) race(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend,
	primary *leg, deadline time.Time, res *Result) *leg {
	done := make(chan *leg, 2)
	primary.req = ctx
	req, up := f.outbound(primary.actx, primary.c.b, in) // here: see sendFirst
	go f.sendFirst(primary, req, up, done)
	legs, winner := f.awaitFirstToken(ctx, in, sel, tried, primary, deadline, res, done)
	if winner == nil { // every leg failed: the relay reports the primary's error
		winner = primary
	}
	if len(legs) > 1 {
		res.Hedge = HedgeLost
		if winner != primary {
			res.Hedge = HedgeWon
		}
	}
	if winner != primary && winner.slot != nil {
		// The winner's slot passes to the first attempt, which may run on
		// in it (below); preempting it must never cut the relayed stream.
		primary.slot, winner.slot = winner.slot, nil
		primary.slot.holder.Store(primary)
	}
	for _, l := range legs {
		f.endAfterRace(ctx, in, l, primary, winner, done)
	}
	if winner.resp != nil && isEventStream(winner.resp) {
		winner.resp.Body = &replay{first: winner.first, err: winner.err, rest: winner.resp.Body}
		winner.first = nil // the replay's alone: dropped once relayed
	}
	return winner
}

// awaitFirstToken collects the legs' reports on done until one has a
// first token (the winner) or every leg sent has failed (winner nil),
// starting a hedge when the hedge delay passes first. It returns the legs
// sent, primary first. A failed leg is settled as it reports.
func (f *Forwarder) awaitFirstToken(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend,
	primary *leg, deadline time.Time, res *Result, done chan *leg) (legs []*leg, winner *leg) {
	legs = []*leg{primary}
	hedgeDue := f.after(hedgeDelay(in.HedgeAfter, primary.c.b, f.opt.Now()))
	for reported := 0; winner == nil && reported < len(legs); {
		select {
		case l := <-done:
			reported++
			l.reported = true
			switch {
			case l.err == nil:
				winner = l
			case l.hedge:
				// A failed (or preempted) hedge ends its call before its
				// spare slot goes: the ticket freed must find its backend
				// slot freed too, not wait for the race to end.
				f.endLost(ctx, l)
				l.ended = true
				f.settle(l, true)
			default:
				f.settle(l, true)
			}
		case <-hedgeDue:
			hedgeDue = nil
			h, outcome := f.startHedge(ctx, in, sel, tried, deadline, res)
			res.Hedge = outcome
			if h != nil {
				legs = append(legs, h)
				hreq, hup := f.outbound(h.actx, h.c.b, in) // here: see sendFirst
				go f.hedgeLeg(h, hreq, hup, done)
			}
		}
	}
	return legs, winner
}

// endAfterRace settles leg l once the race is decided and ends it unless
// it is relayed: now when it has reported, else on a goroutine of the
// Owner that waits for its report on done.
func (f *Forwarder) endAfterRace(ctx context.Context, in *Request, l, primary, winner *leg, done chan *leg) {
	slot := l.slot
	f.settle(l, false)
	switch {
	case l.ended: // a failed hedge, ended in the race
	case l == winner:
		// The request's own admission covers the stream relayed.
		slot.free()
	case l.reported:
		f.endLost(ctx, l)
		slot.free()
	case l == primary && (slot != nil || in.HedgeSlot == nil):
		// The first attempt lost to a hedge: it runs on in the
		// hedge's spare slot (taken back, and it cancelled, the moment
		// a live request needs it) to its own first token, the sample
		// that shows how slow its backend is, so routing moves off it.
		// Its watchdog and the request's context bound it too, except
		// while it has no head: then it runs on past the request's end
		// to its own timeout, a failure that ejects a hung backend (cut
		// at the request's end, a hung backend is never charged one,
		// shows no stalled wait, looks idle and keeps a share of the
		// traffic, each request paying a hedge).
		if l.unlink != nil && l.phase.CompareAndSwap(legHeadless, legUnlinked) {
			l.unlink()
		}
		f.runOn(l, func() { f.endLost(ctx, <-done); slot.free() })
	default:
		// No slot to run on in (or a hedge, which teaches nothing
		// its wait would not): cancelled now.
		// Its slot (a hedge's) is given back once its call has ended,
		// so a ticket never outlives its backend slot's release.
		waited := f.opt.Now().Sub(l.sent)
		l.cancel(errHedgeLost)
		f.runOn(l, func() { f.withdraw(<-done, waited); slot.free() })
	}
}

// runOn runs end, which waits for loser l's report and ends its call, on
// a goroutine of the Forwarder's Owner: shutdown joins it, and cancels l
// when its grace is over (a headless first attempt would otherwise run on
// to its own first-token bound, past the process's end).
func (f *Forwarder) runOn(l *leg, end func()) {
	if f.opt.Owner == nil {
		go end()
		return
	}
	f.opt.Owner.Go(func(stop context.Context) {
		cut := context.AfterFunc(stop, func() { l.cancel(errShutdown) })
		defer cut()
		end()
	})
}

// settle ends l's part in the race, once: a hedge gives back its budget
// and, when freeSlot, its spare slot.
func (f *Forwarder) settle(l *leg, freeSlot bool) {
	if l.settled {
		return
	}
	l.settled = true
	if l.hedge {
		f.opt.Hedges.give()
	}
	if freeSlot {
		l.slot.free()
	}
}

// hedgeLeg sends a hedge, req (built as sendFirst's is), and peeks its
// first token; a head that is not a 200 stream counts as a failed leg.
func (f *Forwarder) hedgeLeg(h *leg, req *http.Request, up *upstream, done chan<- *leg) {
	resp, err := f.roundTrip(req, up)
	h.head = f.opt.Now()
	if err == nil && !isEventStream(resp) {
		drain(resp.Body)
		err = ErrUpstream
	}
	if err != nil {
		h.err = err
		done <- h
		return
	}
	h.resp = resp
	h.peek(done)
}

// endLost ends a leg that lost the race or failed.
func (f *Forwarder) endLost(ctx context.Context, l *leg) {
	cause := context.Cause(l.actx)
	switch {
	case l.err == nil:
		// Its first token came later than the winner's: how slow its
		// backend is, a real sample.
		f.endLeg(l, outcome.Success, 0, true)
	case errors.Is(cause, ErrFirstByteTimeout) || errors.Is(cause, ErrTotalTimeout):
		// Ran into its own bound, also while running on past the
		// request's end: a failure (a hung backend's, what ejects it).
		if errors.Is(cause, ErrFirstByteTimeout) {
			now := f.opt.Now()
			l.c.b.TimedOut(now, now.Sub(l.sent))
		}
		f.endLeg(l, outcome.Failure, 0, false)
	case ctx.Err() != nil || errors.Is(cause, errHedgePreempted) || errors.Is(cause, errHedgeLost) || errors.Is(cause, errShutdown):
		// Cut before its first token, by the client leaving (a hedge
		// also at the request's end), by a live request taking the slot
		// back or by shutdown: its wait is a lower bound, and no fault.
		f.withdraw(l, f.opt.Now().Sub(l.sent))
	case l.resp != nil && (l.resp.StatusCode == http.StatusTooManyRequests || l.resp.StatusCode == http.StatusServiceUnavailable):
		// A first attempt pushed back while a hedge raced: busy, not broken.
		wait, _ := pushBackWait(l.resp.Header, f.opt.Now())
		f.endLeg(l, outcome.Busy, wait, false)
	default:
		f.endLeg(l, outcome.Failure, 0, false)
	}
}

// endLeg ends a leg that will not be relayed. A loser (out Success, gone)
// is charged its wait as latency and nothing else: slow is not broken.
func (f *Forwarder) endLeg(l *leg, out outcome.Outcome, retryAfter time.Duration, gone bool) {
	l.wd.stop()
	l.cancel(nil)
	if l.resp != nil {
		l.resp.Body.Close()
	}
	now := f.opt.Now()
	// A Success carries the wait into the backend's latency estimate.
	l.c.end(now, out, now.Sub(l.sent), retryAfter, gone)
}

// withdraw ends a leg cancelled before its first token because the race
// was decided without it (or its slot was taken back): waited is a lower
// bound of its backend's latency (endpoint.Backend.WithdrawnOf), and the
// breaker is told nothing.
func (f *Forwarder) withdraw(l *leg, waited time.Duration) {
	l.wd.stop()
	l.cancel(nil)
	if l.resp != nil {
		l.resp.Body.Close()
	}
	now := f.opt.Now()
	l.c.withdrawn(now, waited)
}

// withdrawn ends a call cancelled before its first token by a hedge race.
func (c call) withdrawn(now time.Time, waited time.Duration) {
	if c.cpu { // never hedged (Request.CPUOnly); its slot freed all the same
		c.b.AbandonCPU()
	} else {
		c.b.AddWork(-c.work)
		c.b.WithdrawnOf(now, waited, c.wait())
	}
	if c.done != nil {
		c.done(now, outcome.Ignored, waited)
	}
}
