package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
)

// FollowUp is a request about a stored response (Responses API: GET or
// DELETE /v1/responses/{id}, its input_items, its cancel), which only the
// backend that made the response can answer. It is a cheap read of the
// backend's memory, not inference: it takes no slot, its outcome says
// nothing of the backend's health, and its answer passes as it comes.
type FollowUp struct {
	Method, Path, RawQuery string
	Header                 http.Header // the client's; upstreamHeader filters it
	Body                   []byte      // nil: none
	RequestID              string
	ForwardedFor           string
}

// FollowUpResult says how a follow-up ended.
type FollowUpResult struct {
	Backend *endpoint.Backend // the backend whose answer was relayed, or last asked
	Status  int               // the status relayed; 0: none (Err says why)
	Asked   int               // backends asked
	// NotFound: every backend asked answered 404 (Ask with probe): none
	// holds the response, and nothing was relayed.
	NotFound bool
	Err      error // nothing relayed (a transport error), or the relay broke
	// ForeignError: the backend's error answer was not JSON and the
	// client got an OpenAI error object instead (Result.ForeignError).
	ForeignError string
	// Probes says how each probe ended (Ask with probe).
	Probes ProbeTally
}

// ProbeTally counts the probes of one follow-up by how they ended.
type ProbeTally struct {
	Answered  int // the answer relayed (at most one)
	NotFound  int // the backend answered 404: it does not hold the response
	Failed    int // no answer about the response: unreachable, past the probe bound, a redirect, a 408, 429 or 5xx
	Cancelled int // ended by the gateway once another backend answered (its body, if any, closed)
}

// probeWidth bounds the probes of one follow-up in flight at once. A few,
// not all: a hung backend holds one lane until its bound while the others
// go on asking, and one client's unknown id never opens a connection to
// every backend at the same instant.
const probeWidth = 4

// errProbeLost ends a probe whose answer is no longer needed: another
// backend answered first.
var errProbeLost = errors.New("another backend answered the follow-up")

// Ask relays a follow-up's answer. Without probe it is the first
// backend's (the one the id map names), whatever it is, its head within
// Timeouts.FirstByte. With probe (an id nobody remembers) the backends are
// asked at most probeWidth at a time, each probe's head within
// Timeouts.Probe, and the first answer that counts is relayed: anything
// but a 404 (the backend does not hold the response) or a failure (the
// backend said nothing about it: unreachable, past its bound, a redirect,
// a 408, 429 or 5xx). The other probes are then cancelled and their
// bodies closed before the answer is relayed: every probe's goroutine has
// ended when Ask returns. No answer: NotFound when every backend answered
// 404, else Err is a failure's (the response may be on the backend that
// failed, so the client is not told it does not exist). All within
// Timeouts.Total.
//
// Asking at once is safe for DELETE and cancel, which are not
// idempotent: an id is made by one backend and held by that one only (a
// response is kept in its engine's memory; the probes reach each backend
// address once), so every other backend answers 404 and changes nothing,
// and the owner is the only one that deletes or cancels, as when the
// backends were asked in turn. Backends that share one store would each
// answer for it; the first answer is relayed and the rest cancelled, and
// the second delete of one stored response finds nothing to delete.
//
// A redirect is never relayed (it would send the client, and its key,
// wherever the backend points, as relay's reasoning for inference goes).
func (f *Forwarder) Ask(ctx context.Context, w http.ResponseWriter, in *FollowUp, backends []*endpoint.Backend, probe bool) (res FollowUpResult) {
	client, start := ctx, f.opt.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	total := f.opt.AfterFunc(f.opt.Timeouts.Total, func() { cancel(ErrTotalTimeout) })
	defer total.Stop()
	var a probeAnswer
	if probe {
		a = f.probe(ctx, in, backends, &res)
	} else if len(backends) > 0 {
		res.Backend, res.Asked = backends[0], 1
		actx, acancel := context.WithCancelCause(ctx)
		a = f.askOne(actx, acancel, backends[0], in, f.opt.Timeouts.FirstByte, false)
		res.Err = a.err
	}
	if a.resp == nil {
		return res
	}
	res.Backend, res.Err = a.b, nil
	res.Err = f.relayFollowUp(client, w, a, in, start.Add(f.opt.Timeouts.Total), &res.ForeignError)
	res.Status = a.resp.StatusCode // as relayed: a success the gateway could not read is a 502
	a.cancel(nil)
	return res
}

// probeAnswer is how one backend answered a follow-up.
type probeAnswer struct {
	b *endpoint.Backend
	i int // its place in the probe order
	// resp is an answer that counts, its body unread; nil otherwise.
	resp     *http.Response
	notFound bool
	err      error // no answer that counts: why (nil for a 404)
	lost     bool  // ended by errProbeLost
	// ctx is the ask's context (the answer's body is read within it);
	// cancel ends it once its answer is relayed.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// askOne sends the follow-up to b within ctx, whose cancel it is; the
// head must come within bound. An answer that does not count (with
// probe: a 404, a 408, 429 or 5xx; always: a redirect) is read off (its
// drain within the same bound) and its context ended; one that counts is
// returned with its body unread.
func (f *Forwarder) askOne(ctx context.Context, cancel context.CancelCauseFunc, b *endpoint.Backend, in *FollowUp, bound time.Duration, probe bool) (a probeAnswer) {
	a = probeAnswer{b: b, ctx: ctx, cancel: cancel}
	timer := f.opt.AfterFunc(bound, func() { cancel(boundError(probe)) })
	defer func() {
		if !timer.Stop() && a.resp != nil {
			// The bound passed as the head came: the context is ending.
			a.resp.Body.Close()
			a.resp, a.err = nil, boundError(probe)
		}
		if a.resp == nil {
			a.lost = errors.Is(context.Cause(ctx), errProbeLost)
			cancel(nil)
		}
	}()
	resp, err := f.opt.Transport.RoundTrip(f.followUpRequest(ctx, b, in))
	if err != nil {
		a.err = classifyTransportError(err, context.Cause(ctx))
		return a
	}
	switch code := resp.StatusCode; {
	case !httpStatus(code):
		a.err = fmt.Errorf("%w: status %d, not an HTTP status", ErrUpstream, code)
	case code/100 == 3:
		a.err = fmt.Errorf("%w: a %d redirect", ErrBadAnswer, code)
	case probe && code == http.StatusNotFound:
		a.notFound = true
	case probe && (code/100 == 5 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout):
		// The backend is failing or busy: it has not said whether it holds
		// the response.
		a.err = fmt.Errorf("%w: a %d answer to a follow-up", ErrUpstream, code)
	default:
		a.resp = resp
		return a
	}
	drain(resp.Body)
	return a
}

// boundError is the cause of an ask past its bound: a probe's is
// ErrProbeTimeout, the owner's the first-byte timeout.
func boundError(probe bool) error {
	if probe {
		return ErrProbeTimeout
	}
	return ErrFirstByteTimeout
}

// probeBound is each probe's bound: Timeouts.Probe, never past
// Timeouts.FirstByte.
func (f *Forwarder) probeBound() time.Duration {
	t := f.opt.Timeouts
	if t.Probe <= 0 || t.Probe > t.FirstByte {
		return t.FirstByte
	}
	return t.Probe
}

// probe asks backends about the follow-up, at most probeWidth at a time,
// until one answers or all have; it returns the answer to relay (resp nil:
// none) once every probe has ended, and fills res's counts, NotFound and
// Err. The probes' goroutines send on a channel with room for all of them
// and are joined before it returns.
func (f *Forwarder) probe(ctx context.Context, in *FollowUp, backends []*endpoint.Backend, res *FollowUpResult) (won probeAnswer) {
	bound := f.probeBound()
	answers := make(chan probeAnswer, len(backends))
	cancels := make([]context.CancelCauseFunc, 0, len(backends))
	var wg sync.WaitGroup
	defer wg.Wait()
	running := 0
	for {
		for won.resp == nil && running < probeWidth && len(cancels) < len(backends) && ctx.Err() == nil {
			b := backends[len(cancels)]
			actx, acancel := context.WithCancelCause(ctx)
			cancels = append(cancels, acancel)
			running++
			res.Backend, res.Asked = b, res.Asked+1
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				a := f.askOne(actx, acancel, b, in, bound, true)
				a.i = i
				answers <- a
			}(len(cancels) - 1)
		}
		if running == 0 {
			break
		}
		a := <-answers
		running--
		switch {
		case a.resp != nil && won.resp == nil:
			won = a
			res.Probes.Answered++
			for i, c := range cancels {
				if i != a.i {
					c(errProbeLost) // a probe already ended keeps its own cause
				}
			}
		case a.resp != nil: // another holder answered too (a shared store)
			a.resp.Body.Close()
			a.cancel(nil)
			res.Probes.Cancelled++
		case a.notFound:
			res.Probes.NotFound++
		case a.lost:
			res.Probes.Cancelled++
		default:
			res.Probes.Failed++
			if res.Err == nil {
				res.Err = a.err
			}
		}
	}
	switch {
	case won.resp != nil:
		res.Err = nil
	case res.Err == nil && ctx.Err() != nil: // the client left, or the total bound, before all were asked
		res.Err = classifyTransportError(context.Cause(ctx), context.Cause(ctx))
	case res.Err == nil:
		res.NotFound = res.Asked > 0
	}
	return won
}

// followUpRequest is the follow-up as sent to b: its method, path and
// query, the headers an inference request would carry (upstreamHeader:
// the backend's credentials, not the client's).
func (f *Forwarder) followUpRequest(ctx context.Context, b *endpoint.Backend, in *FollowUp) *http.Request {
	t := b.Target()
	spec := b.Spec()
	u := &url.URL{Scheme: t.Scheme, Host: t.Host, Path: t.Path + in.Path, RawQuery: upstreamQuery(in.RawQuery, spec)}
	h := upstreamHeader(&Request{Header: in.Header, RequestID: in.RequestID, ForwardedFor: in.ForwardedFor}, spec)
	if followUpStream(in.RawQuery) {
		// A stream is asked uncompressed, as an inference stream is
		// (forward.go): relayFollowUp ends a broken one with an in-band
		// error event, which appended to compressed bytes would corrupt
		// them, and its events stay readable to the gateway.
		h["Accept-Encoding"] = identityEncoding
	}
	req := &http.Request{Method: in.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Host: t.Host, Body: http.NoBody}
	if len(in.Body) > 0 {
		body := in.Body
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return req.WithContext(ctx)
}

// followUpStream reports whether a follow-up's query may ask for an event
// stream (stream=true, as the Responses API's GET takes it; also 1, the
// other spelling a backend's boolean parser takes). Any value of the key
// counts, the key decoded: backends differ on which of repeated keys they
// take (the first, or the last as Starlette's), and asking identity of an
// answer that is no stream costs only its compression.
func followUpStream(rawQuery string) bool {
	if rawQuery == "" {
		return false
	}
	q, _ := url.ParseQuery(rawQuery) // what parsed; a malformed pair is the backend's to refuse
	for _, v := range q["stream"] {
		if v = strings.TrimSpace(v); strings.EqualFold(v, "true") || v == "1" {
			return true
		}
	}
	return false
}

// relayFollowUp passes the answer a on as it comes (an error body that
// is not JSON as an OpenAI error object, noted in foreign), an event stream
// (GET ?stream=true of a background response) flushed after every read.
// The gap between reads is bounded by Timeouts.StreamIdle, as an
// inference stream's is (a watchdog on the ask's context): a backend that
// sent the head and went silent would otherwise hold the client until
// Timeouts.Total. A stream cut short (idle, total, a read error) ends with
// the in-band error event an inference Responses stream gets; one whose
// client left (client ended) gets nothing.
func (f *Forwarder) relayFollowUp(client context.Context, w http.ResponseWriter, a probeAnswer, in *FollowUp, deadline time.Time, foreign *string) error {
	b, resp := a.b, a.resp
	defer resp.Body.Close()
	idle := f.opt.Timeouts.StreamIdle
	wd := startWatchdog(idle, 0, deadline, f.opt.Now(), f.opt.Now, f.opt.AfterFunc, a.cancel)
	wd.idle(idle) // the head came: the gap phase from here
	defer wd.stop()
	key := b.Spec().APIKey
	switch {
	case key == "":
	case resp.StatusCode/100 != 2 || !encoded(resp) && !strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream"):
		// An error, or a success not streamed: held whole within 64 KiB
		// (its length kept exact), scrubbed as it streams past.
		scrubKey(resp, key, in.RequestID) // scrub.go
	default:
		// A stream scrubbed as it comes (nothing of an event held), or
		// a compressed success decoded as it streams.
		if err := scrubAnswer(resp, key); err != nil {
			// Compressed in a coding the gateway cannot read, though
			// asked for identity: withheld, as such an error is.
			drain(resp.Body)
			e := openai.ServerError(http.StatusBadGateway, "upstream_bad_response",
				"the backend's answer was compressed in a way the gateway cannot check for its credentials, so it is withheld (request id "+in.RequestID+")")
			body := e.JSON()
			resp.StatusCode = http.StatusBadGateway
			resp.Header.Del("Content-Encoding")
			resp.Header.Set("Content-Type", "application/json")
			resp.Header["Content-Length"] = []string{strconv.Itoa(len(body))}
			resp.Body = heldBody{Reader: bytes.NewReader(body), Closer: resp.Body}
		}
	}
	if resp.StatusCode >= 400 {
		// A backend's error page (a proxy's HTML 404 for a path it
		// lacks) as an OpenAI error object, as on the inference path.
		*foreign = wrapForeignError(resp, in.RequestID) // errbody.go
	}
	f.writeHead(w, b, resp, &Request{RequestID: in.RequestID}, f.opt.Now())
	stream := strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream")
	flusher, _ := w.(http.Flusher)
	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	for {
		n, err := resp.Body.Read(*bufp)
		if n > 0 {
			wd.idle(idle)
			if _, werr := f.toClient(w, wd, (*bufp)[:n]); werr != nil {
				return context.Canceled
			}
			if stream && flusher != nil {
				flusher.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if client.Err() != nil {
				return context.Canceled // nobody reads an error event
			}
			err = readFailure(a.ctx, err)
			if stream && !encoded(resp) {
				// A Responses stream's own "error" event; its sequence
				// number is left out (the relay does not read the events).
				// Not after compressed bytes (a backend that compresses
				// although asked not to, relayed raw): plain text appended
				// to them would corrupt what the client decodes; the cut
				// shows there as a truncated body.
				w.Write(midStreamError(err, in.RequestID).ResponsesErrorEvent(0, false))
				if flusher != nil {
					flusher.Flush()
				}
			}
			return err
		}
	}
}
