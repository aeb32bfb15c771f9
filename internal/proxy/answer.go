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
	held, over, readErr := f.hold(resp.Body, wd, *bufp)
	var err error
	if readErr != nil {
		return f.failEarly(ctx, c, readFailure(actx, readErr), start, res)
	}
	valid, errorObject := openai.ObjectPrefix(held), false // too large to hold: checked by its start
	if !over {
		valid, errorObject = openai.CheckAnswer(held) // one pass: ValidObject and ErrorObject
	}
	if !valid {
		return f.failEarly(ctx, c, fmt.Errorf("%w: a 2xx body of %d bytes that is not a JSON object", ErrBadAnswer, len(held)), start, res)
	}
	var facts openai.ResponseFacts
	var ids *openai.IDScan // a Responses answer too large to hold: its id is read as it passes
	if in.Peek.API == openai.APIResponses {
		if over {
			ids = new(openai.IDScan)
			ids.Write(held)
		} else if facts = openai.ReadResponse(held); facts.IsResponse {
			errorObject = false // a failed response carries its "error": still the backend's answer
		}
	}
	if errorObject {
		// A failure reported with a 2xx status: relayed, an SDK reads it
		// as an empty completion and the cache would replay it.
		return f.failEarly(ctx, c, fmt.Errorf("%w: a 2xx answer that is an error object", ErrBadAnswer), start, res)
	}

	if _, ok := resp.Body.(*scrubbedBody); ok {
		// Read through the key scrub (a keyed backend's): the length
		// held is what the client gets; one too long to hold goes
		// without, as the mask may shorten what is still to come.
		if over {
			delete(resp.Header, "Content-Length")
		} else {
			resp.Header["Content-Length"] = []string{strconv.Itoa(len(held))}
		}
	}
	usage := held // where usage is read: the answer as the backend sent it
	if in.Peek.Stream && !in.AnyShape && in.Peek.API == openai.APIResponses {
		return f.failEarly(ctx, c, fmt.Errorf("%w: a JSON answer to a Responses stream request", ErrBadAnswer), start, res)
	}
	if in.Peek.Stream && !in.AnyShape && in.Endpoint == openai.EndpointNone {
		// JSON for a stream request: a backend that ignored "stream".
		// (A transcription's is relayed as it came: whisper-1 ignores
		// "stream" by design, and OpenAI itself answers JSON then.)
		if held, err = asStream(resp, held, over); err != nil {
			return f.failEarly(ctx, c, err, start, res)
		}
	}

	f.commit(w, c.b, resp, in, start, res)
	res.ResponseID = facts.ID
	if in.Capture != nil {
		in.Capture.write(held)
	}
	writeErr := writeInPieces(clientWriter{f: f, w: w, wd: wd}, held, len(*bufp))
	if !over && in.Peek.API == openai.APIResponses {
		res.Usage, res.UsageKnown = facts.Usage, facts.UsageKnown
	} else if !over && in.Endpoint != openai.EndpointNone {
		res.Usage, res.UsageKnown = in.findUsage(usage) // held whole: a rerank's usage precedes its results
	} else if !over {
		res.Usage, res.UsageKnown = openai.FindUsage(usage[max(0, len(usage)-tailSize):])
	} else if writeErr == nil {
		// Too large to hold: the rest goes as it comes, through the pooled
		// buffer (held has moved off it), and usage is read from the tail;
		// an endpoint's, failing that, from the start held (a rerank's).
		var start openai.Usage
		startKnown := false
		if in.Endpoint != openai.EndpointNone {
			start, startKnown = openai.FindEndpointUsage(held)
		}
		writeErr, readErr = f.relayRest(w, resp.Body, wd, in, *bufp, ids, res)
		if !res.UsageKnown && startKnown {
			res.Usage, res.UsageKnown = start, true
		}
	}
	if ids != nil {
		// Whatever of the answer passed: an id read whole is the backend's,
		// wherever it was in the object.
		res.ResponseID = ids.ID()
	}

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
	return false
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
