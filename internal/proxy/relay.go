package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
)

// relayBufPool holds the copy buffers; a request borrows one for its body.
var relayBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// tailSize is how much of the response end is kept to find "usage" in.
const tailSize = 4 << 10

// tail keeps the last tailSize bytes written to it.
type tail struct{ buf []byte }

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

func (f *Forwarder) writeHead(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *Request) {
	h := w.Header()
	copyHeader(h, resp.Header)
	h.Set("X-Request-Id", in.RequestID)
	// Inference answers are per request and, unless the gateway shares
	// them (CacheControl), per client: never stored by a CDN or browser.
	cc := "no-store"
	if resp.StatusCode == http.StatusOK && in.CacheControl != "" {
		cc = in.CacheControl
	}
	h.Set("Cache-Control", cc)
	if f.opt.ExposeBackend {
		h.Set("X-Sluice-Backend", b.Name())
	}
	w.WriteHeader(resp.StatusCode)
}

// midStreamError is the in-band error event of a stream cut short. Its
// text is fixed: the read error names addresses and Go internals, which
// stay in the log (the gateway logs Result.Err with the request id).
func midStreamError(err error, reqID string) *openai.Error {
	e := &openai.Error{Type: openai.TypeServer, Code: "upstream_error", Message: "the backend failed mid-stream"}
	switch {
	case errors.Is(err, ErrStreamIdle):
		e.Code, e.Message = "upstream_idle_timeout", "the backend stopped sending data"
	case errors.Is(err, ErrTotalTimeout):
		e.Code, e.Message = "request_timeout", "the request exceeded the gateway's total time limit"
	}
	if reqID != "" {
		e.Message += " (request id " + reqID + ")"
	}
	return e
}

// relay copies a response to the client. Streams are flushed after every
// read so each SSE event leaves as soon as it arrives; the watchdog turns
// into the idle timer between chunks.
func (f *Forwarder) relay(ctx, actx context.Context, w http.ResponseWriter, c call,
	resp *http.Response, wd *watchdog, in *Request, start time.Time, res *Result) {
	defer resp.Body.Close()
	b := c.b
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	wd.idle(f.opt.Timeouts.StreamIdle)
	defer wd.timer.Stop()

	f.writeHead(w, b, resp, in)
	res.Status, res.Written = resp.StatusCode, true
	res.TTFB = f.opt.Now().Sub(start)
	flusher, _ := w.(http.Flusher)
	if stream && flusher != nil {
		flusher.Flush()
	}

	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	buf := *bufp
	tl := tailPool.Get().(*tail)
	tl.buf = tl.buf[:0]
	defer tailPool.Put(tl)

	first := true
	var readErr, writeErr error
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if first && stream {
				now := f.opt.Now()
				res.TTFB = now.Sub(start)
				b.FirstToken(now, res.TTFB)
				c.fed = true
			}
			first = false
			wd.idle(f.opt.Timeouts.StreamIdle)
			tl.write(buf[:n])
			if in.Capture != nil {
				in.Capture.write(buf[:n])
			}
			if _, writeErr = w.Write(buf[:n]); writeErr != nil {
				break
			}
			if stream && flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	res.Usage, res.UsageKnown = openai.FindUsage(tl.buf)

	outcome := endpoint.Success
	if resp.StatusCode >= 500 {
		outcome = endpoint.Failure
	}
	clientGone := writeErr != nil || errors.Is(ctx.Err(), context.Canceled) // whatever the cause
	if readErr != nil && !clientGone {
		outcome = endpoint.Failure
		cause := context.Cause(actx)
		switch {
		case errors.Is(cause, ErrStreamIdle):
			res.Err = ErrStreamIdle
		case errors.Is(cause, ErrTotalTimeout):
			res.Err = ErrTotalTimeout
		default:
			res.Err = errors.Join(ErrUpstream, readErr)
		}
		if stream {
			// The status line is gone; tell the client in-band, as OpenAI does.
			ev := midStreamError(res.Err, in.RequestID).SSEEvent()
			w.Write(ev)
			if flusher != nil {
				flusher.Flush()
			}
		}
	} else if clientGone {
		res.Err = context.Canceled
	}
	// The latency signal for health, p2c and the adaptive limit: time to the
	// first token for streams (headers alone may come before any work),
	// time to the response otherwise.
	c.end(f.opt.Now(), outcome, res.TTFB, 0, clientGone && readErr != nil)
}

// relayBusy passes on a backend's 429/503 when every attempt was refused.
func (f *Forwarder) relayBusy(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *Request, start time.Time, res *Result) {
	f.writeHead(w, b, resp, in)
	res.Status, res.Written = resp.StatusCode, true
	res.TTFB = f.opt.Now().Sub(start)
	bufp := relayBufPool.Get().(*[]byte)
	io.CopyBuffer(w, io.LimitReader(resp.Body, 1<<20), *bufp)
	relayBufPool.Put(bufp)
}
