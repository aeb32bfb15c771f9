package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// relayBufPool holds the copy buffers; a request borrows one for its body.
var relayBufPool = sync.Pool{New: func() any { b := make([]byte, bigRead); return &b }}

// tailSize is how much of the response end is kept to find "usage" in.
const tailSize = 4 << 10

// tail keeps the last tailSize bytes written to it. (A relayed stream
// keeps a usageTail instead.)
type tail struct {
	buf []byte
}

func (t *tail) write(p []byte) {
	if len(p) >= tailSize {
		t.buf = append(t.buf[:0], p[len(p)-tailSize:]...)
		return
	}
	if over := len(t.buf) + len(p) - tailSize; over > 0 {
		n := copy(t.buf, t.buf[over:])
		t.buf = t.buf[:n]
	}
	t.buf = append(t.buf, p...)
}

var tailPool = sync.Pool{New: func() any { return &tail{buf: make([]byte, 0, tailSize)} }}

// noBuffering is the X-Accel-Buffering value of every relayed stream,
// shared: cap 1, so an Add to it copies, never writes into it.
var noBuffering = []string{"no"}

func (f *Forwarder) writeHead(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *Request, now time.Time) {
	h := w.Header()
	copyHeader(h, resp.Header)
	// Dated now, by the gateway's clock (the backend's Date is dropped);
	// set here, net/http does not format its own on every answer.
	h["Date"] = f.dates.At(now)
	vals := make([]string, 3) // the values set here share one allocation
	vals[0] = in.RequestID
	h["X-Request-Id"] = vals[0:1:1]
	if strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream") {
		// A relayed stream may end with an error event the backend's
		// length did not count, or lose a malformed tail.
		h.Del("Content-Length")
		// An nginx in front must not hold the events back: the gateway's
		// word, as on its own streams (a backend's X-Accel-* is dropped:
		// isBackendOrigin).
		h["X-Accel-Buffering"] = noBuffering
	}
	// Inference answers are per request and, unless the gateway shares
	// them (CacheControl), per client: never stored by a CDN or browser.
	cc := "no-store"
	if resp.StatusCode == http.StatusOK && in.CacheControl != "" {
		cc = in.CacheControl
	}
	vals[1] = cc
	h["Cache-Control"] = vals[1:2:2]
	if f.opt.ExposeBackend {
		vals[2] = b.Name()
		h["X-Sluice-Backend"] = vals[2:3:3]
	}
	w.WriteHeader(resp.StatusCode)
}

// midStreamError is the in-band error event of a stream cut short. Its
// text is fixed: the read error names addresses and Go internals, which
// stay in the log (the gateway logs Result.Err with the request id).
func midStreamError(err error, reqID string) *openai.Error {
	e := &openai.Error{Type: openai.TypeServer, Code: "upstream_error", Message: "the backend failed mid-stream"}
	switch {
	case errors.Is(err, ErrBadAnswer):
		e.Code, e.Message = "upstream_bad_response", "the backend sent a malformed stream"
	case errors.Is(err, ErrStreamIdle):
		e.Code, e.Message = "upstream_idle_timeout", "the backend stopped sending data"
	case errors.Is(err, ErrTotalTimeout):
		e.Code, e.Message = "request_timeout", "the request exceeded the gateway's total time limit"
	case errors.Is(err, ErrTokenBudget):
		e.Type, e.Code, e.Message = openai.TypeRateLimit, "rate_limit_exceeded", "the token rate limit ran out during this stream, which set no max_tokens; its answer is cut here"
	case errors.Is(err, ErrShuttingDown):
		e.Code, e.Message = "shutting_down", "the gateway is shutting down and its drain time (shutdown_grace) ended before this stream did; retry"
	case errors.Is(err, ErrKeyRevoked):
		e.Type, e.Code, e.Message = openai.TypeInvalidRequest, "api_key_revoked", "the API key this stream was opened with has been revoked; the stream ends here"
	}
	if reqID != "" {
		e.Message += " (request id " + reqID + ")"
	}
	return e
}

// relay passes a response on to the client. A 2xx answer is checked
// before the client's response is committed (relayAnswer, relayStream);
// a 3xx is refused; error statuses are the backend's own word and pass as
// they are (relayRaw) when their body is JSON, else their status with an
// OpenAI error object (wrapForeignError); compressed answers pass as they
// are. It returns true when the attempt
// failed before anything reached the client and the request may try
// another backend (res.Err says why).
func (f *Forwarder) relay(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start, head time.Time, res *Result) (retry bool) {
	// Its return statements stay few: with two defers, more than 7 of them
	// make the compiler put the defers on a list run at return instead of
	// open-coding them (returns x defers > 15), ~400 instructions per
	// request (TestProxyDefersOpenCoded). The checks that refuse the head
	// return their error from unrelayable.
	defer resp.Body.Close()
	wd.idleAt(f.opt.Timeouts.StreamIdle, head)
	defer wd.stop()
	ct, enc, err := unrelayable(actx, c, resp)
	if err != nil {
		return f.failEarly(ctx, c, err, start, res)
	}
	switch {
	case resp.StatusCode/100 != 2 || enc:
		if resp.StatusCode/100 != 2 {
			if key := c.b.Spec().APIKey; key != "" {
				scrubKey(resp, key, in.RequestID) // scrub.go
			}
			// Before the head: a body that is not JSON becomes an
			// OpenAI error object (errbody.go), its text logged.
			// An event-stream error passed as its JSON object is
			// relabelled too (sseerror.go): ct is read again.
			res.ForeignError = wrapErrorFor(w, resp, in.RequestID)
			ct = headerGet(resp.Header, "Content-Type")
		}
		f.relayRaw(ctx, actx, w, c, resp, wd, in, start, res, strings.HasPrefix(ct, "text/event-stream"))
		return false
	case strings.HasPrefix(ct, "text/event-stream") && !in.Peek.Stream && !in.AnyShape:
		return f.relayStreamAsAnswer(ctx, actx, w, c, resp, wd, in, start, res) // shape.go
	case strings.HasPrefix(ct, "text/event-stream"):
		return f.relayStream(ctx, actx, w, c, resp, wd, in, start, res)
	default:
		return f.relayAnswer(ctx, actx, w, c, resp, ct, wd, in, start, res)
	}
}

// unrelayable reads resp's head before anything of it reaches the client:
// a keyed backend's success is put behind the key scrub, and a head no
// client may be given is an error the attempt fails with (its body
// drained). It returns the answer's Content-Type and, for a 2xx, whether
// it came compressed (encoded), each read once for the whole relay.
func unrelayable(actx context.Context, c call, resp *http.Response) (ct string, enc bool, err error) {
	if key := c.b.Spec().APIKey; key != "" && resp.StatusCode/100 == 2 {
		// A keyed backend's success is read through the key scrub, as
		// its errors are (relay): decoded first when it came compressed.
		if err := scrubAnswer(resp, key); err != nil { // scrub.go
			drain(resp.Body)
			if !errors.Is(err, ErrBadAnswer) {
				err = readFailure(actx, err) // an idle or total timeout, or the backend's failure
			}
			return "", false, err
		}
	}
	ct = headerGet(resp.Header, "Content-Type")
	enc = resp.StatusCode/100 == 2 && encoded(resp)
	switch {
	case !httpStatus(resp.StatusCode):
		// 600-999 (and, from an HTTP/2 backend, below 100) is no HTTP
		// status: net/http would write 600-999 as they come, which a
		// client takes for anything or nothing, and panics below 100. A
		// broken backend, as a bad head is: the cause goes to the log.
		err = fmt.Errorf("%w: status %d, not an HTTP status", ErrUpstream, resp.StatusCode)
	case resp.StatusCode/100 == 3:
		// A redirect (or a 304 to a POST) answers nothing: relayed, it
		// would send the client, prompt and key, wherever the backend
		// points. Not followed either: the gateway talks to the backends
		// it was given. A misconfigured URL (http -> https, a missing
		// path) is a broken backend, so it counts as one.
		err = fmt.Errorf("%w: a %d redirect", ErrBadAnswer, resp.StatusCode)
	case enc && !jsonContentType(ct) && !strings.HasPrefix(ct, "text/event-stream"):
		// Compressed bytes are not checked, but what they claim to be is.
		err = fmt.Errorf("%w: 2xx with Content-Type %q", ErrBadAnswer, ct)
	}
	if err != nil {
		drain(resp.Body)
	}
	return ct, enc, err
}

// httpStatus reports whether code is an HTTP status (100-599), one a
// client may be given.
func httpStatus(code int) bool { return code >= 100 && code <= 599 }

// encoded reports whether the backend compressed its answer (the client
// asked for that): a success's bytes are relayed unchecked, as the gateway
// does not decompress them (a keyed backend's answers are: scrubKey,
// scrubAnswer).
func encoded(resp *http.Response) bool {
	ce := headerGet(resp.Header, "Content-Encoding")
	return ce != "" && !strings.EqualFold(ce, "identity")
}

// commit sends the response head: from here on the request cannot go to
// another backend.
func (f *Forwarder) commit(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *Request, start time.Time, res *Result) {
	now := f.opt.Now() // the head's Date and the time to it
	f.writeHead(w, b, resp, in, now)
	res.Status, res.Written = resp.StatusCode, true
	res.TTFB = now.Sub(start)
}

// readFailure classifies a read error of the attempt's body.
func readFailure(actx context.Context, readErr error) error {
	cause := context.Cause(actx)
	switch {
	case errors.Is(cause, ErrStreamIdle):
		return ErrStreamIdle
	case errors.Is(cause, ErrTotalTimeout):
		return ErrTotalTimeout
	default:
		return errors.Join(ErrUpstream, readErr)
	}
}

// failEarly ends an attempt that broke before the client got anything.
// A broken or malformed answer may be tried on another backend; a
// timeout is not (the time is spent), nor a client that left.
func (f *Forwarder) failEarly(ctx context.Context, c call, err error, start time.Time, res *Result) (retry bool) {
	now := f.opt.Now()
	if errors.Is(ctx.Err(), context.Canceled) { // whatever the cause
		c.end(now, outcome.Success, now.Sub(start), 0, true)
		res.Err = context.Canceled
		return false
	}
	c.end(now, outcome.Failure, now.Sub(start), 0, false)
	res.Err = err
	return errors.Is(err, ErrUpstream) || errors.Is(err, ErrBadAnswer)
}

// relayRaw copies a response to the client as it comes: the backend's
// error answers, which are its own word on the request, and compressed
// answers. Streams are flushed after every read.
func (f *Forwarder) relayRaw(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start time.Time, res *Result, stream bool) {
	b := c.b
	f.commit(w, b, resp, in, start, res)
	flusher, _ := w.(http.Flusher)
	if stream && flusher != nil {
		flusher.Flush()
	}

	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	buf := *bufp
	ut := streamBufsPool.Get().(*streamBufs)
	tl := &ut.usage
	tl.reset()
	defer streamBufsPool.Put(ut)

	first := true
	var readErr, writeErr error
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if first && stream {
				now := f.opt.Now()
				res.TTFB = now.Sub(start)
				if !c.cpu { // a CPU-side call's time is learnt by nothing
					prompt := b.FirstTokenOf(now, res.TTFB, c.wait())
					c.fed = true
					// An error answer sent as an event stream is no
					// start of generation: a ramp probe answered so
					// proves no slot (it ends unjudged at its release).
					if in.Started != nil && resp.StatusCode/100 == 2 {
						in.Started.FirstToken(prompt)
					}
				}
			}
			first = false
			wd.idle(f.opt.Timeouts.StreamIdle)
			tl.write(buf[:n])
			if in.Capture != nil {
				in.Capture.write(buf[:n])
			}
			if _, writeErr = f.toClient(w, wd, buf[:n]); writeErr != nil {
				break
			}
			if stream && flusher != nil {
				flusher.Flush()
			}
			if stream && in.ReleaseBody && !res.BodyReleased {
				releaseBody(in, res) // committed, its first bytes out
			}
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	res.Usage, res.UsageKnown = in.findUsage(tl.buf)
	in.boundUsage(res)

	out := outcome.Success
	if resp.StatusCode >= 500 {
		out = outcome.Failure
	}
	clientGone := relayCut(ctx, readErr, writeErr) // answer.go
	// An in-band error event ends a cut stream only when the stream is
	// plain text: appended to the bytes of a backend that compresses
	// although asked not to, it would corrupt what the client decodes;
	// there the cut shows as a truncated body.
	plain := stream && !encoded(resp)
	if readErr != nil && !clientGone {
		out = outcome.Failure
		res.Err = readFailure(actx, readErr)
		if plain {
			f.sendStreamError(w, res.Err, in, nil)
		}
	} else if clientGone {
		res.Err = context.Canceled
		if plain {
			if cut := f.endCutStream(ctx, w, writeErr, in, nil); cut != nil {
				res.Err = cut
			}
		}
	}
	if in.Started != nil && !stream && resp.StatusCode/100 == 2 && res.Err == nil {
		// A compressed 2xx JSON answer, told once it ended whole
		// (relayAnswer's note): one that broke off was no answer.
		in.Started.Answered()
	}
	c.end(f.opt.Now(), out, res.TTFB, 0, clientGone && readErr != nil)
}

// endCutStream ends a committed stream that the gateway cut, the cause
// of ctx, with an in-band error event: its shutdown (ErrShuttingDown) or
// a reload that removed its API key (ErrKeyRevoked). The client is still
// reading and must not take the cut for the end of the answer. A stream
// whose client left (writeErr, or a plain cancel) gets nothing: nobody
// reads it. It returns the stream's Result.Err when it sent the event
// (still context.Canceled to whatever tells a cancelled request: the
// request was not the backend's failure; the access log says why), else
// nil.
func (f *Forwarder) endCutStream(ctx context.Context, w http.ResponseWriter, writeErr error, in *Request, chk *sseCheck) error {
	if writeErr != nil {
		return nil
	}
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, ErrShuttingDown):
		cause = ErrShuttingDown
	case errors.Is(cause, ErrKeyRevoked):
		cause = ErrKeyRevoked
	default:
		return nil
	}
	f.sendStreamError(w, cause, in, chk)
	return fmt.Errorf("%w: %w", context.Canceled, cause)
}

// toClient writes p to the client with the attempt's watchdog paused: a
// client slow to take the answer (back-pressure, once read-ahead is full)
// is not the backend idling, and must not cut or blame the backend; the
// client's own bound is server.send_timeout. The gap timer restarts when
// the write returns.
func (f *Forwarder) toClient(w io.Writer, wd *watchdog, p []byte) (int, error) {
	wd.pause()
	n, err := w.Write(p)
	wd.idle(f.opt.Timeouts.StreamIdle)
	return n, err
}

// clientWriter is toClient as an io.Writer.
type clientWriter struct {
	f  *Forwarder
	w  io.Writer
	wd *watchdog
}

func (c clientWriter) Write(p []byte) (int, error) { return c.f.toClient(c.w, c.wd, p) }

// sendStreamError ends a committed stream with an in-band error event, as
// OpenAI does: the status line is gone. chk is the stream's check (nil for
// one relayed unchecked), which says the event's shape.
// A StreamErrorWriter takes the event as a function of the request id.
func (f *Forwarder) sendStreamError(w http.ResponseWriter, err error, in *Request, chk *sseCheck) {
	event := func(reqID string) []byte { return chk.streamErrorEvent(midStreamError(err, reqID)) }
	if sw, ok := w.(StreamErrorWriter); ok {
		sw.WriteStreamError(event)
		return
	}
	w.Write(event(in.RequestID))
	if flusher, ok := w.(http.Flusher); ok {
		flusher.Flush()
	}
}

// StreamErrorWriter is a ResponseWriter that relays one answer to several
// clients (a coalescing flight). The in-band error event of a stream cut
// short names the request id of the client reading it, which such a writer
// knows and the upstream call does not (it carries the first client's), so
// it takes the event as a function of the id: each client's ends its own.
type StreamErrorWriter interface {
	WriteStreamError(event func(reqID string) []byte)
}

// blindBusyWait is how long a backend that pushed back without saying
// for how long is taken to be busy: its busy_penalty, for which routing
// asks it last (endpoint.Backend.Observe). When every backend pushed back
// it is what the client is told too, so the answer agrees with what the
// gateway itself will do: tell 1 s while the backends stay deprioritised
// for a busy_penalty of 5 s, and the clients come back to backends the
// gateway still counts busy.
func blindBusyWait(b *endpoint.Backend) time.Duration {
	return max(b.HealthPolicy().BusyPenalty, time.Second) // whole seconds, at least 1: every refusal says when to come back
}

// relayBusy passes on a backend's 429/503 when every attempt was refused.
// Its wait is restated in the gateway's own form, the one every refusal
// of the gateway has (openai.WriteError): Retry-After in whole seconds
// and retry-after-ms, both rounded up, from the one wait the gateway read
// (pushBackWait) and acts on for the backend's busy state. A drowning
// server's 503 often says nothing of when to come back (vLLM's does not),
// and a wait the gateway cannot stand behind (garbage, negative, past a
// day) is no better: the client is told the gateway's own estimate,
// blindBusyWait. A backend's "1.5" or HTTP date reaches no client as
// sent, nor a retry-after-ms that disagrees with its Retry-After. One
// that names a wait longer than the SDKs honour (a hosted API's daily
// quota) gets x-should-retry: false unless it says itself, as the
// gateway's own answers do (openai.RetryFutile): else the SDKs would
// retry it twice within seconds.
func (f *Forwarder) relayBusy(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *Request, start time.Time, res *Result) {
	wait, said := pushBackWait(resp.Header, f.opt.Now())
	if !said {
		wait = blindBusyWait(b)
	}
	resp.Header.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
	resp.Header.Set("Retry-After-Ms", strconv.FormatInt(openai.RetryAfterMs(wait), 10))
	if said && headerGet(resp.Header, openai.ShouldRetryHeader) == "" && openai.RetryFutile(resp.StatusCode, wait, false) {
		resp.Header.Set(openai.ShouldRetryHeader, "false")
	}
	if key := b.Spec().APIKey; key != "" {
		scrubKey(resp, key, in.RequestID) // scrub.go
	}
	// nginx's limit_req 503 page, a proxy's HTML 429: an OpenAI error
	// object, Retry-After kept (errbody.go).
	res.ForeignError = wrapErrorFor(w, resp, in.RequestID)
	now := f.opt.Now() // the head's Date and the time to it
	f.writeHead(w, b, resp, in, now)
	res.Status, res.Written = resp.StatusCode, true
	res.TTFB = now.Sub(start)
	bufp := relayBufPool.Get().(*[]byte)
	io.CopyBuffer(w, io.LimitReader(resp.Body, 1<<20), *bufp)
	relayBufPool.Put(bufp)
}

// headerGet is h.Get for a canonical key (a constant): net/http stores
// received keys canonical, and Get re-canonicalises the key on every call,
// which costs more than the lookup on a path that reads several per
// response (gateway/headers.go has the same for requests).
func headerGet(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}
