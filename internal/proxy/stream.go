package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// nearEndTokens is how many chunks before a stream's max_tokens its slot
// is handed to the next request (Request.NearEnd). An engine frees a
// sequence's slot in the step that computes its last token; the gateway
// learns it only when the last chunk and [DONE] have crossed its
// connection and the relay has ended, and the next request then crosses
// the gateway and the connection the other way before the engine can
// start it. In between the slot idles: measured on the README's demo
// (in-process simulators, a busy 2-core host), handing the slot on two
// chunks early served 13–14 more requests per run with a p99 time to first
// token 60–150 ms lower (docs/BENCHMARKS.md §8). Two chunks are two decode
// steps: a request sent that early waits at most that long inside the
// engine. An answer that stops before max_tokens (most do, at EOS) frees
// its slot as before.
const nearEndTokens = 2

// relayStream relays a 2xx event stream event by event, each checked
// (sseCheck) and flushed as soon as it is whole. The response is committed
// with the first valid event, so a stream that is malformed or breaks off
// before it fails the attempt like a refused connection and may go to
// another backend. Later, a malformed event, a broken connection or an end
// without [DONE] ends the client's stream with an in-band error event
// after the last whole event, and counts as a backend failure. Valid
// streams pass byte for byte.
func (f *Forwarder) relayStream(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start time.Time, res *Result) (retry bool) {
	b := c.b
	flusher, _ := w.(http.Flusher)
	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	buf := *bufp
	tl := tailPool.Get().(*tail)
	tl.buf = tl.buf[:0]
	defer tailPool.Put(tl)

	var chk sseCheck
	var readErr, writeErr error
	bad := false
	yielded := false // the slot was handed on (nearEndTokens)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			wd.idle(f.opt.Timeouts.StreamIdle)
		}
		eof := err == io.EOF
		out, malformed := chk.feed(buf[:n], eof)
		if len(out) > 0 {
			if !res.Written { // the first valid event: the first token
				f.commit(w, b, resp, in, start, res)
				b.FirstToken(f.opt.Now(), res.TTFB)
				c.fed = true
			}
			tl.write(out)
			if in.Capture != nil {
				in.Capture.write(out)
			}
			if _, writeErr = f.toClient(w, wd, out); writeErr != nil {
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
			if !yielded && in.Peek.MaxTokens > nearEndTokens && chk.events >= in.Peek.MaxTokens-nearEndTokens {
				yielded = true
				b.YieldSlot()
				if in.NearEnd != nil {
					in.NearEnd()
				}
			}
		}
		if malformed {
			bad = true
			break
		}
		if err != nil {
			if !eof {
				readErr = err
			}
			break
		}
	}
	res.Usage, res.UsageKnown = openai.FindUsage(tl.buf)
	if yielded {
		b.ReclaimSlot() // for c.end to release
	}

	clientGone := writeErr != nil || errors.Is(ctx.Err(), context.Canceled) // whatever the cause
	var fail error
	switch {
	case clientGone:
	case readErr != nil:
		fail = readFailure(actx, readErr)
	case bad:
		fail = fmt.Errorf("%w: a stream event that is neither a JSON object nor [DONE]", ErrBadAnswer)
	case !chk.done && !chk.errored:
		fail = fmt.Errorf("%w: the stream ended without [DONE]", ErrBadAnswer)
	}
	if !res.Written {
		if fail == nil && !clientGone {
			fail = fmt.Errorf("%w: an empty stream", ErrBadAnswer)
		}
		return f.failEarly(ctx, c, fail, start, res)
	}
	out := outcome.Success
	if fail != nil {
		out = outcome.Failure
		res.Err = fail
		f.sendStreamError(w, fail, in)
	} else if clientGone {
		res.Err = context.Canceled
	}
	// The latency signal for health, p2c and the adaptive limit: time to
	// the first token (headers alone may come before any work).
	c.end(f.opt.Now(), out, res.TTFB, 0, clientGone && readErr != nil)
	return false
}
