package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// Hedging ("The Tail at Scale"): a stream whose head came but whose first
// token is late (Request.HedgeAfter) is sent to a second backend as well,
// and the client gets whichever stream starts first; the other is ended
// at its own first token (its latency sample). A backend that just turned
// ten times slower is only found out by the requests it holds, and p2c stops sending it more within a first
// token's time, but those few requests would each miss the objective by
// the slow backend's whole latency; a hedge bounds them at HedgeAfter plus
// a healthy backend's time to first token. Nothing has reached the client
// before the race is decided, so the switch is invisible to it. Hedges are
// retries: they need an attempt left and the retry budget's consent.

// leg is one upstream attempt racing for the first token.
type leg struct {
	c      call
	actx   context.Context
	cancel context.CancelCauseFunc
	wd     *watchdog
	resp   *http.Response
	sent   time.Time // when the attempt started (its wait, if it loses)
	first  []byte    // the first chunk read, replayed to the relay
	err    error     // the first read's error (nil when a chunk came)
	// reported: its goroutine has sent it on the race's channel.
	reported bool
}

// isEventStream reports whether resp is a streamed answer worth racing.
func isEventStream(resp *http.Response) bool {
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
}

// peek reads l's first chunk (the first token, for an inference stream)
// and reports l on done.
func (l *leg) peek(done chan<- *leg) {
	buf := make([]byte, 4<<10)
	n, err := l.resp.Body.Read(buf)
	for n == 0 && err == nil { // a zero read is no token yet
		n, err = l.resp.Body.Read(buf)
	}
	l.first, l.err = buf[:n], err
	if n > 0 {
		l.err = nil
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
		r.first = r.first[n:]
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.rest.Read(p)
}

func (r *replay) Close() error { return r.rest.Close() }

// race waits for primary's first token; when it is later than HedgeAfter
// and a hedge may be sent, it starts one on another backend and keeps the
// stream that starts first. It returns the leg to relay (its body replays
// the peeked chunk; when every leg failed, the primary with its error).
// Every other leg is cancelled, waited for and ended here.
func (f *Forwarder) race(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend,
	primary *leg, deadline time.Time, res *Result) *leg {
	done := make(chan *leg, 2)
	legs := []*leg{primary}
	go primary.peek(done)
	hedge := time.NewTimer(in.HedgeAfter)
	defer hedge.Stop()
	var winner *leg
	for reported := 0; winner == nil && reported < len(legs); {
		select {
		case l := <-done:
			reported++
			l.reported = true
			if l.err == nil {
				winner = l
			}
		case <-hedge.C:
			if h := f.startHedge(ctx, in, sel, tried, deadline, res); h != nil {
				legs = append(legs, h)
				go f.hedgeLeg(h, in, done)
			}
		}
	}
	if winner == nil { // every leg failed: the relay reports the primary's error
		winner = primary
	}
	for _, l := range legs {
		if l == winner {
			continue
		}
		if !l.reported {
			// The loser runs on to its first token, then ends: its time to
			// first token is the only sample that shows how slow its
			// backend really is. Cancelled now, it would teach the backend
			// only the hedge delay, and hedging would hide a slow backend
			// from the picker. Its watchdog (first-token bound) and the
			// request's context bound it; only it can still report.
			go func() { f.endLost(ctx, <-done) }()
			continue
		}
		f.endLost(ctx, l)
	}
	winner.resp.Body = &replay{first: winner.first, err: winner.err, rest: winner.resp.Body}
	return winner
}

// startHedge admits a hedge on a backend not tried yet, or returns nil
// (no attempt left, no retry budget, no backend with room, the deadline
// passed).
func (f *Forwarder) startHedge(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend,
	deadline time.Time, res *Result) *leg {
	now := f.opt.Now()
	if res.Attempts >= f.opt.Attempts || !now.Before(deadline) {
		return nil
	}
	if f.opt.Budget != nil && !f.opt.Budget.Withdraw(now) {
		return nil
	}
	b, _ := sel.Select(*tried)
	if b == nil || !b.Acquire() {
		return nil
	}
	done, ok := b.AllowCall(now)
	if !ok {
		b.Abandon()
		return nil
	}
	*tried = append(*tried, b)
	res.Attempts++
	res.Retries++
	h := &leg{c: call{b: b, done: done, work: in.Work, waiting: true}, sent: now}
	b.AddWork(h.c.work)
	b.StartWaiting(now)
	h.actx, h.cancel = context.WithCancelCause(ctx)
	h.wd = startWatchdog(f.opt.Timeouts.FirstByte, in.FirstToken, deadline, f.opt.Now, h.cancel)
	return h
}

// hedgeLeg sends a hedge and peeks its first token; a head that is not a
// 200 stream counts as a failed leg.
func (f *Forwarder) hedgeLeg(h *leg, in *Request, done chan<- *leg) {
	resp, err := f.opt.Transport.RoundTrip(f.outbound(h.actx, h.c.b, in))
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
	if l.err == nil || ctx.Err() != nil {
		// Its first token came later than the winner's, which says how
		// slow it is; or the client left, which says nothing about it.
		f.endLeg(l, outcome.Success, true)
		return
	}
	f.endLeg(l, outcome.Failure, false)
}

// endLeg ends a leg that will not be relayed. A loser (out Success, gone)
// is charged its wait as latency and nothing else: slow is not broken.
func (f *Forwarder) endLeg(l *leg, out outcome.Outcome, gone bool) {
	l.wd.timer.Stop()
	l.cancel(nil)
	if l.resp != nil {
		l.resp.Body.Close()
	}
	now := f.opt.Now()
	// A Success carries the wait into the backend's latency estimate.
	l.c.end(now, out, now.Sub(l.sent), 0, gone)
}
