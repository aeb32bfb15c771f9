package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Queue progress (X-Sluice-Progress: 1) tells a streaming client where it
// stands while its request waits in the gateway's queue: SSE comment lines,
// which SDK parsers ignore, with its position and estimated start, once when
// it is queued and then every progressEvery:
//
//	: sluice-queue position=3 eta_ms=1200 start=2026-12-03T09:30:01.200Z waited_ms=800
//
// The first comment commits the response: 200 and the event-stream
// headers. So a request that is then refused (deadline, shed, pushed out of
// a full queue) or fails at the backend gets its error as one in-stream
// event in the OpenAI error shape, as a stream cut short does, and the
// stream ends. A request granted or refused at arrival is never committed
// early: it gets exactly the answer it would have got without the header.
// Non-streaming requests ignore the header (a client may send it on all its
// calls); queued jobs and coalesced followers do not report. The writer sits
// in front of the read-ahead writer, which serveDirect finds under it and
// arms once the request is admitted: the comments went straight to the
// client before, and a slow reader of a progress stream frees its backend
// slot when the backend finishes, as without the header.

// progressEvery is how often a queued request's place is reported.
const progressEvery = time.Second

// maxHeldError bounds the error answer held after an early commit, to be
// sent as one event at the end; a longer one is replaced by a generic event.
const maxHeldError = 64 << 10

// Ticker makes the channel that paces progress comments and its stop
// function; nil in Options means time.NewTicker. Tests send on their own.
type Ticker func(every time.Duration) (tick <-chan time.Time, stop func())

func realTicker(every time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// progressStream is the response writer of a request that opted in. Until
// the first report it passes everything through unchanged. After it,
// headers go to a map of their own (the client already has its head), a
// 2xx event stream passes through, and any other answer is held and sent
// by end as one error event.
type progressStream struct {
	http.ResponseWriter
	tick      Ticker
	reqID     string
	committed bool
	late      http.Header // headers written after the commit; never sent
	failing   bool        // the answer after the commit is not a 2xx event stream
	status    int         // its status
	held      []byte      // its body, up to maxHeldError
	overflow  bool
}

func newProgressStream(w http.ResponseWriter, tick Ticker, reqID string) *progressStream {
	if tick == nil {
		tick = realTicker
	}
	return &progressStream{ResponseWriter: w, tick: tick, reqID: reqID}
}

// acquire waits for a slot in q, reporting the request's place while it
// is queued.
func (ps *progressStream) acquire(ctx context.Context, q *admission.Queue, req admission.Request) (*admission.Ticket, error) {
	tick, stop := ps.tick(progressEvery)
	defer stop()
	return q.AcquireWithProgress(ctx, req, admission.Progress{Tick: tick, Report: ps.report})
}

// report writes one progress comment, committing the response first.
func (ps *progressStream) report(p admission.Place) {
	if !ps.committed {
		h := ps.ResponseWriter.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no") // an nginx in front must not hold the comments back
		h.Del("Content-Length")
		ps.ResponseWriter.WriteHeader(http.StatusOK)
		ps.committed, ps.late = true, make(http.Header)
	}
	ps.ResponseWriter.Write(openai.SSEComment(progressText(p)))
	ps.flush()
}

// progressText is a report's comment text: key=value fields, durations in
// whole milliseconds, eta and start left out when the pool has no capacity
// to estimate them by.
func progressText(p admission.Place) string {
	var b strings.Builder
	b.WriteString("sluice-queue position=")
	b.WriteString(strconv.Itoa(p.Position))
	if p.Wait < admission.MaxWait {
		b.WriteString(" eta_ms=")
		b.WriteString(strconv.FormatInt(p.Wait.Milliseconds(), 10))
		b.WriteString(" start=")
		b.WriteString(p.Start.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	b.WriteString(" waited_ms=")
	b.WriteString(strconv.FormatInt(p.Waited.Milliseconds(), 10))
	return b.String()
}

func (ps *progressStream) Header() http.Header {
	if ps.committed {
		return ps.late
	}
	return ps.ResponseWriter.Header()
}

func (ps *progressStream) WriteHeader(code int) {
	if !ps.committed {
		ps.ResponseWriter.WriteHeader(code)
		return
	}
	if code/100 == 2 && strings.HasPrefix(ps.late.Get("Content-Type"), "text/event-stream") {
		return // the stream the client was promised: its head is sent
	}
	ps.failing, ps.status = true, code
}

func (ps *progressStream) Write(p []byte) (int, error) {
	if !ps.failing {
		return ps.ResponseWriter.Write(p)
	}
	if len(ps.held)+len(p) > maxHeldError {
		ps.overflow = true
	} else {
		ps.held = append(ps.held, p...)
	}
	return len(p), nil
}

func (ps *progressStream) Flush() {
	if !ps.failing {
		ps.flush()
	}
}

func (ps *progressStream) flush() {
	if f, ok := ps.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController and abortResponse reach the
// connection.
func (ps *progressStream) Unwrap() http.ResponseWriter { return ps.ResponseWriter }

// end sends a held error answer as the stream's last event: the backend's
// or the gateway's own OpenAI error object when it is one, else a generic
// error naming the status. A Retry-After the answer carried goes before it
// as a comment (the header can no longer be sent).
func (ps *progressStream) end() {
	if !ps.failing {
		return
	}
	if ms := ps.late.Get("Retry-After-Ms"); ms != "" {
		ps.ResponseWriter.Write(openai.SSEComment("retry-after-ms=" + ms))
	}
	ev, ok := openai.ErrorEventOf(ps.held)
	if !ok || ps.overflow {
		e := &openai.Error{Type: openai.TypeServer, Code: "upstream_error",
			Message: fmt.Sprintf("the backend answered with HTTP status %d (request id %s)", ps.status, ps.reqID)}
		if ps.status/100 == 2 {
			e.Code, e.Message = "upstream_bad_response", "the backend answered a streaming request without an event stream (request id "+ps.reqID+")"
		}
		ev = e.SSEEvent()
	}
	ps.ResponseWriter.Write(ev)
	ps.flush()
	ps.failing = false
}

// acquire waits for a slot in q for the call, reporting its place to the
// client when it asked for progress.
func (c *upstreamCall) acquire(ctx context.Context, q *admission.Queue, req admission.Request) (*admission.Ticket, error) {
	if c.progress == nil {
		return q.Acquire(ctx, req)
	}
	return c.progress.acquire(ctx, q, req)
}

// progressFor wraps x's writer for queue progress when the request asked
// for it and can have it: a streaming request from a client (a job has no
// one to tell). nil otherwise.
func (g *Gateway) progressFor(x *exchange) *progressStream {
	if !x.ctl.progress || !x.call.peek.Stream || x.job != nil {
		return nil
	}
	ps := newProgressStream(x.w, g.progress, x.rec.id)
	x.call.progress = ps
	return ps
}
