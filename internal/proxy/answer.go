package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// maxCheckedAnswer bounds how much of a non-streamed 2xx answer the relay
// holds to check it whole before the client's response is committed.
// Completions are a few KiB; an answer over the bound (a large embedding
// batch) is checked by its start only and then relayed as it comes, so
// no request holds more than this.
const maxCheckedAnswer = 256 << 10

// jsonContentType reports whether ct names JSON: application/json or a
// +json type, any parameters.
func jsonContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	return strings.EqualFold(mt, "application/json") ||
		len(mt) > len("+json") && strings.EqualFold(mt[len(mt)-len("+json"):], "+json")
}

// relayAnswer relays a non-streamed 2xx answer once it is known to be what
// it claims: JSON by its Content-Type and a JSON object, not an error
// object (openai.ErrorObject), by its bytes; to a stream request, converted
// (shape.go). An answer that is not, or breaks off, fails the attempt
// before the client got anything, so it may go to another backend. ct is
// its Content-Type, as unrelayable read it.
func (f *Forwarder) relayAnswer(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, ct string, wd *watchdog, in *Request, start time.Time, res *Result) (retry bool) {
	if !jsonContentType(ct) {
		drain(resp.Body)
		return f.failEarly(ctx, c, fmt.Errorf("%w: 2xx with Content-Type %q", ErrBadAnswer, ct), start, res)
	}
	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	var a heldAnswer
	if err := f.holdAnswer(actx, resp.Body, wd, in, *bufp, &a); err != nil {
		return f.failEarly(ctx, c, err, start, res)
	}
	if err := a.reshape(resp, in); err != nil {
		return f.failEarly(ctx, c, err, start, res)
	}

	f.commit(w, c.b, resp, in, start, res)
	res.ResponseID = a.facts.ID
	if in.Capture != nil {
		in.Capture.write(a.held)
	}
	writeErr, readErr := f.sendAnswer(w, resp.Body, wd, in, *bufp, &a, res)
	f.endRelayedAnswer(ctx, actx, c, in, res, readErr, writeErr)
	return false
}

// heldAnswer is a non-streamed answer as relayAnswer holds it before the
// commit.
type heldAnswer struct {
	// held is the answer (its start, when over), converted to a stream
	// for a stream request (reshape); usage is where its usage is read:
	// the answer as the backend sent it.
	held, usage []byte
	over        bool // too large to hold whole: held is its start
	facts       openai.ResponseFacts
	// ids reads a Responses answer too large to hold for its id as it
	// passes (scanIDs). A value, not a pointer: relayAnswer's stack
	// holds it, as it held the new(openai.IDScan) it replaces.
	ids     openai.IDScan
	scanIDs bool
}

// holdAnswer reads the answer into buf (hold) and checks it is a JSON
// object and not an error object; the error, if not, fails the attempt.
func (f *Forwarder) holdAnswer(actx context.Context, body io.Reader, wd *watchdog, in *Request, buf []byte, a *heldAnswer) error {
	held, over, readErr := f.hold(body, wd, buf)
	if readErr != nil {
		return readFailure(actx, readErr)
	}
	valid, errorObject := openai.ObjectPrefix(held), false // too large to hold: checked by its start
	if !over {
		valid, errorObject = openai.CheckAnswer(held) // one pass: ValidObject and ErrorObject
	}
	if !valid {
		return fmt.Errorf("%w: a 2xx body of %d bytes that is not a JSON object", ErrBadAnswer, len(held))
	}
	a.held, a.usage, a.over = held, held, over
	if in.Peek.API == openai.APIResponses {
		if over {
			a.scanIDs = true
			a.ids.Write(held)
		} else if a.facts = openai.ReadResponse(held); a.facts.IsResponse {
			errorObject = false // a failed response carries its "error": still the backend's answer
		}
	}
	if errorObject {
		// A failure reported with a 2xx status: relayed, an SDK reads it
		// as an empty completion and the cache would replay it.
		return fmt.Errorf("%w: a 2xx answer that is an error object", ErrBadAnswer)
	}
	return nil
}

// reshape fits the held answer's head to what the client gets: its length
// once the key scrub ran, and a stream request's answer converted to a
// stream; the error refuses an answer that cannot be.
func (a *heldAnswer) reshape(resp *http.Response, in *Request) error {
	if _, ok := resp.Body.(*scrubbedBody); ok {
		// Read through the key scrub (a keyed backend's): the length
		// held is what the client gets; one too long to hold goes
		// without, as the mask may shorten what is still to come.
		if a.over {
			delete(resp.Header, "Content-Length")
		} else {
			resp.Header["Content-Length"] = []string{strconv.Itoa(len(a.held))}
		}
	}
	if in.Peek.Stream && !in.AnyShape && in.Peek.API == openai.APIResponses {
		return fmt.Errorf("%w: a JSON answer to a Responses stream request", ErrBadAnswer)
	}
	if in.Peek.Stream && !in.AnyShape && in.Endpoint == openai.EndpointNone {
		// JSON for a stream request: a backend that ignored "stream".
		// (A transcription's is relayed as it came: whisper-1 ignores
		// "stream" by design, and OpenAI itself answers JSON then.)
		held, err := asStream(resp, a.held, a.over)
		if err != nil {
			return err
		}
		a.held = held
	}
	return nil
}

// sendAnswer writes the held answer to the client, relays the rest of one
// too large to hold as it comes, and reads the answer's usage and a
// Responses answer's id.
func (f *Forwarder) sendAnswer(w http.ResponseWriter, body io.Reader, wd *watchdog, in *Request, buf []byte, a *heldAnswer, res *Result) (writeErr, readErr error) {
	writeErr = writeInPieces(clientWriter{f: f, w: w, wd: wd}, a.held, len(buf))
	switch {
	case !a.over && in.Peek.API == openai.APIResponses:
		res.Usage, res.UsageKnown = a.facts.Usage, a.facts.UsageKnown
	case !a.over && in.Endpoint != openai.EndpointNone:
		res.Usage, res.UsageKnown = in.findUsage(a.usage) // held whole: a rerank's usage precedes its results
	case !a.over:
		res.Usage, res.UsageKnown = openai.FindUsage(a.usage[max(0, len(a.usage)-tailSize):])
	case writeErr == nil:
		// Too large to hold: the rest goes as it comes, through the pooled
		// buffer (held has moved off it), and usage is read from the tail;
		// an endpoint's, failing that, from the start held (a rerank's).
		var start openai.Usage
		startKnown := false
		if in.Endpoint != openai.EndpointNone {
			start, startKnown = openai.FindEndpointUsage(a.held)
		}
		var ids *openai.IDScan
		if a.scanIDs {
			ids = &a.ids
		}
		writeErr, readErr = f.relayRest(w, body, wd, in, buf, ids, res)
		if !res.UsageKnown && startKnown {
			res.Usage, res.UsageKnown = start, true
		}
	}
	if a.scanIDs {
		// Whatever of the answer passed: an id read whole is the backend's,
		// wherever it was in the object.
		res.ResponseID = a.ids.ID()
	}
	return writeErr, readErr
}

// endRelayedAnswer settles a committed answer: its outcome (a read that
// broke off is the backend's failure, a client that left is nobody's),
// the ticket's answer, its usage bound, and the call's end.
func (f *Forwarder) endRelayedAnswer(ctx, actx context.Context, c call, in *Request, res *Result, readErr, writeErr error) {
	out := outcome.Success
	clientGone := relayCut(ctx, readErr, writeErr)
	if readErr != nil && !clientGone {
		out = outcome.Failure
		res.Err = readFailure(actx, readErr)
	} else if clientGone {
		res.Err = context.Canceled
	}
	if in.Started != nil && res.Err == nil {
		// Served whole, with no first token to judge: a stream request's
		// tenant ramp counts it as an answer, as it did before ramp4
		// (admission.Ticket.Answered). Told here, not at the commit: an
		// answer too large to hold (a long transcript, a flight's JSON)
		// may still break off, and then it was no answer.
		in.Started.Answered()
	}
	in.boundUsage(res)
	// Its first byte came with the whole answer: the backend's first-token
	// estimates learn it per output token (endpoint.Backend.ReleaseAnswer).
	tokens := 0
	if res.UsageKnown {
		tokens = res.Usage.CompletionTokens
	}
	res.ended = f.opt.Now()
	c.endAnswer(res.ended, out, res.TTFB, tokens, clientGone && readErr != nil)
}

// relayCut reports whether the client's leaving (ctx cancelled, whatever
// the cause, or a write that failed) cut an answer relayed as it comes:
// a write failed, or a read did once ctx was cancelled. A cancel that
// came after the answer was read to its end and written whole cut
// nothing: a flight's leader whose client closes its connection at the
// answer's last byte ends the flight's context while the relay is still
// settling the answer, and the whole 200 was taken for a client gone
// (no ramp completion, no cache fill, an access line without its status).
func relayCut(ctx context.Context, readErr, writeErr error) bool {
	return writeErr != nil || readErr != nil && errors.Is(ctx.Err(), context.Canceled)
}

// hold reads an answer into buf, growing it up to maxCheckedAnswer (over:
// there is more). buf is the pooled relay buffer; the result moves off it
// only for an answer larger than it.
func (f *Forwarder) hold(body io.Reader, wd *watchdog, buf []byte) (held []byte, over bool, readErr error) {
	held = buf[:0]
	for {
		if len(held) >= maxCheckedAnswer {
			return held, true, nil
		}
		if len(held) == cap(held) {
			held = slices.Grow(held, len(held))
		}
		n, err := body.Read(held[len(held):cap(held)])
		held = held[:len(held)+n]
		if n > 0 {
			wd.idle(f.opt.Timeouts.StreamIdle)
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			return held, false, readErr
		}
	}
}

// writeInPieces writes p at most size bytes at a time, as the relay
// does when it copies: a writer that bounds what it holds (a coalesced
// flight's window) makes room one piece at a time.
func writeInPieces(w io.Writer, p []byte, size int) error {
	for len(p) > 0 {
		n := min(len(p), size)
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// relayRest copies the rest of a committed answer to the client; ids,
// when set, reads it for a Responses answer's id.
func (f *Forwarder) relayRest(w http.ResponseWriter, body io.Reader, wd *watchdog, in *Request, buf []byte, ids *openai.IDScan, res *Result) (writeErr, readErr error) {
	tl := tailPool.Get().(*tail)
	tl.buf = tl.buf[:0]
	defer tailPool.Put(tl)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			wd.idle(f.opt.Timeouts.StreamIdle)
			tl.write(buf[:n])
			if ids != nil {
				ids.Write(buf[:n])
			}
			if in.Capture != nil {
				in.Capture.write(buf[:n])
			}
			if _, writeErr = f.toClient(w, wd, buf[:n]); writeErr != nil {
				break
			}
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	if in.Peek.API == openai.APIResponses {
		res.Usage, res.UsageKnown = openai.FindResponseUsage(tl.buf)
	} else {
		res.Usage, res.UsageKnown = in.findUsage(tl.buf)
	}
	return writeErr, readErr
}
