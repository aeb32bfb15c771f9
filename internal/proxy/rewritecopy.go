package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
)

// copyHold keeps the copy of a rewritten body (outbound: a model alias's
// body of up to maxRewriteCopy, sent in one write with the head) only as
// long as a transport may read it. The response keeps its request
// (http.Response.Request), and the transport its body, for the stream's
// whole life: a reader left pointing at the copy kept every held stream's
// prompt twice (the pooled body and this copy).
//
// The copy is dropped when both have happened, whichever comes second:
// the backend's head came (answered: the round trip returned, so no
// transport re-reads the body through GetBody any more; net/http retries
// a request on a reused connection the server closed, an idempotent one
// even after its write, before any head), and the body's last reader was
// written whole (wrote: an HTTP/2 stream, or an HTTP/1.1 request
// answered early, is still being written after its head). A write that
// failed leaves the copy to the request's life, as before.
type copyHold struct {
	mu   sync.Mutex
	up   *upstream
	data []byte
	// cur is the reader the transport reads now: the request's own
	// (&up.body) or the last one GetBody made.
	cur   *bytes.Reader
	wrote bool // cur was written whole
	head  bool
	trace httptrace.ClientTrace
}

// hold starts keeping data, which up.body reads, and returns the context
// whose trace reports the writes.
func (c *copyHold) hold(ctx context.Context, up *upstream, data []byte) context.Context {
	c.up, c.data, c.cur = up, data, &up.body
	up.body.Reset(data)
	c.trace.WroteRequest = c.written
	return httptrace.WithClientTrace(ctx, &c.trace)
}

// getBody is the request's GetBody: a new reader over the copy, for a
// transport's retry (before any head, so the copy is still there).
func (c *copyHold) getBody() (io.ReadCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := bytes.NewReader(c.data)
	c.cur, c.wrote = r, false
	return io.NopCloser(r), nil
}

// written is the trace's WroteRequest: reported by the goroutine that
// wrote the body, after its last read of it (net/http: of the attempt
// whose GetBody came last; a failed attempt's writer ends before the
// transport retries).
func (c *copyHold) written(info httptrace.WroteRequestInfo) {
	if info.Err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrote = true
	if c.head {
		c.drop()
	}
}

// answered is told that the round trip returned with a head.
func (c *copyHold) answered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.head = true
	if c.wrote {
		c.drop()
	}
}

// drop lets go of the copy: the reader the transport wrote from is
// emptied. After a retry the request's own reader is left as it is: an
// abandoned HTTP/2 attempt's writer may still be reading it (its body is
// closed, not waited for), and it is the rare case.
func (c *copyHold) drop() {
	if c.data == nil {
		return
	}
	c.cur.Reset(nil)
	c.data, c.cur = nil, nil
}

// roundTrip sends req, built by outbound with up, through the transport;
// a head lets up drop what it kept only for the send.
func (f *Forwarder) roundTrip(req *http.Request, up *upstream) (*http.Response, error) {
	resp, err := f.opt.Transport.RoundTrip(req)
	if err == nil && up.copy.up != nil { // set before the send, never changed
		up.copy.answered()
	}
	return resp, err
}
