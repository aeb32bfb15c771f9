package h1client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"
)

// conn is one keep-alive connection; one request at a time uses it.
type conn struct {
	c         *Client
	nc        net.Conn
	br        reader      // in the conn: one allocation less
	scratch   headScratch // reused for every response head
	ends      [32]int32   // scratch.ends's first array: no allocation for a usual head
	key       string      // host:port
	idleSince time.Time
	reused    bool // taken from the pool for the current request
	closed    atomic.Bool
	peek      peeker // alive's state
	bw        bodyWriter
	// closeFunc is close as a func value, made once per connection:
	// exchange hands it to context.AfterFunc for every request, where a
	// method value made there would be allocated each time.
	closeFunc func()
	// grown is the bytes of grown read buffer counted for this connection
	// in its client's Stats.ReadBufferBytes; a closed connection's are
	// taken back (its buffer is dropped with it).
	grown atomic.Int64
	// abort: the request's write was stopped with its body unsent (an
	// early answer); close resets the connection (SO_LINGER 0) rather
	// than leave the kernel sending the rest to a backend that does not
	// read it: a closed socket with megabytes queued would stay orphaned
	// in FIN-WAIT-1, its send queue held, until the orphan timeout.
	abort atomic.Bool
}

func newConn(c *Client, nc net.Conn, key string) *conn {
	cn := &conn{c: c, nc: nc, key: key, br: newReader(nc, c.opt.ReadBufferSize, &c.bigBufs, &c.smallBufs)}
	cn.scratch.ends = cn.ends[:0]
	cn.closeFunc = cn.close
	cn.bw.cn = cn
	cn.br.acct = cn
	return cn
}

func (cn *conn) close() {
	if cn.closed.CompareAndSwap(false, true) {
		if l, ok := cn.nc.(interface{ SetLinger(sec int) error }); ok && cn.abort.Load() {
			l.SetLinger(0)
		}
		cn.nc.Close()
		cn.c.open.Add(-1)
		cn.uncountGrown()
	}
}

// countGrown adds delta bytes of grown read buffer (the reader's owner
// calls it). close may run at the same time on another goroutine (the
// request's context ending): whichever of the two runs last takes the
// closed connection's count back, so each byte counted is taken back once.
func (cn *conn) countGrown(delta int64) {
	cn.grown.Add(delta)
	cn.c.grownBytes.Add(delta)
	if cn.closed.Load() {
		cn.uncountGrown()
	}
}

func (cn *conn) uncountGrown() {
	if n := cn.grown.Swap(0); n != 0 {
		cn.c.grownBytes.Add(-n)
	}
}

// exchangeError is a failed exchange, with what a retry needs to know.
type exchangeError struct {
	err            error
	nothingWritten bool // the request did not leave at all
	unsent         bool // the request did not leave whole (a write failed; so no response either)
	noResponse     bool // the request left whole and not one byte of a response arrived
	reused         bool // the connection came from the pool
}

func (e *exchangeError) Error() string { return e.err.Error() }
func (e *exchangeError) Unwrap() error { return e.err }

// exchange writes the request on cn and reads the response head. The
// request's context closes the connection when it ends (which unblocks a
// write or read in progress) until the body is done with it.
func (c *Client) exchange(ctx context.Context, cn *conn, req *http.Request, out encoded) (*http.Response, error) {
	stop := noStop
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, cn.closeFunc)
	}
	fail := func(e *exchangeError) (*http.Response, error) {
		e.reused = cn.reused
		stop()
		cn.close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx) // as net/http: the context's cause, not the closed socket's error
		}
		return nil, e
	}
	n, err := cn.nc.Write(out.msg)
	if err == nil && !out.whole() {
		err = cn.bw.writeRest(out, c.readAlongAfter)
	}
	if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
	early := err != nil
	h, e := cn.responseHead(ctx, n, err)
	if e != nil {
		return fail(e)
	}
	if early && cn.reused && h.code == http.StatusRequestTimeout {
		// A backend closing an idle keep-alive connection may send an
		// unsolicited 408 first; sent after the pool's liveness check, it
		// is read here, but it answers no request (net/http ignores a 408
		// on an idle connection). The request is unsent, as before.
		return fail(&exchangeError{err: errIdle408, unsent: true})
	}
	f, err := frame(h, req.Method, req.Close || early)
	if err != nil {
		return fail(&exchangeError{err: err, unsent: early})
	}
	resp := &http.Response{
		Status: h.status, StatusCode: h.code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: h.minor,
		Header: h.header, ContentLength: f.length, Close: f.close, Request: req,
	}
	if h.minor == 0 {
		resp.Proto = "HTTP/1.0"
	}
	if f.chunked {
		resp.TransferEncoding = chunkedCoding
	}
	if f.none || f.length == 0 {
		resp.Body = http.NoBody
		cn.release(stop, !f.close)
		return resp, nil
	}
	b := &body{cn: cn, ctx: ctx, stop: stop, f: f}
	if !f.chunked {
		b.left = f.length
	}
	resp.Body = b
	return resp, nil
}

// responseHead reads the response's final head once the request's write
// has ended (n bytes of its message written in the first write, err the
// write's error).
func (cn *conn) responseHead(ctx context.Context, n int, err error) (head, *exchangeError) {
	early := err != nil
	if cn.bw.along != nil {
		// The head was read alongside the body's write (bodyWriter), which
		// the read stopped if it ended first: the rules below, on what
		// the read found.
		stopped := err == errWriteStopped
		// A stopped or stalled write leaves the body's rest unsent: the
		// close resets (joinRead closes a stalled one at once).
		cn.abort.Store(stopped || err == ErrSendStalled)
		r := cn.bw.joinRead(err)
		switch {
		case early && !stopped && ctx.Err() != nil:
			// The context ended the write (its close): whatever head came
			// (a 2xx does not stop the write), no answer, as below.
			return head{}, &exchangeError{err: err, unsent: true}
		case early && !stopped && (!connWriteFailed(err) || !r.begun):
			return head{}, &exchangeError{err: err, unsent: true}
		case !r.begun:
			return head{}, &exchangeError{err: r.err, unsent: early, noResponse: !early}
		case r.err != nil:
			return head{}, &exchangeError{err: r.err, unsent: early}
		}
		return r.h, nil
	}
	if early {
		// A server may answer before reading the whole body (a body
		// limit's 413, an auth proxy's 401) and close over the rest: the
		// write then fails, but its answer is in the receive queue, and
		// it is the truth about the request, as curl and nginx read it.
		// The write failed on a broken connection, so this read ends at
		// once; the connection is not reused. Only the connection's own
		// write error says so: a body that failed at its source (a client
		// gone mid-upload, a short body) leaves the server waiting for the
		// rest, and the read would wait for its first_byte timeout.
		if n == 0 || ctx.Err() != nil || !connWriteFailed(err) || cn.br.waitByte() != nil {
			return head{}, &exchangeError{err: err, nothingWritten: n == 0, unsent: true}
		}
	} else if err := cn.br.waitByte(); err != nil {
		return head{}, &exchangeError{err: err, noResponse: true}
	}
	// After a failed write, bytes that make no final answer (a 100
	// Continue, a head cut off by the reset) leave the request as unsent
	// as it was: it did not leave whole (Unanswered, the proxy's retry).
	h, err := readFinalHead(&cn.br, &cn.scratch)
	if err != nil {
		return head{}, &exchangeError{err: err, unsent: early}
	}
	return h, nil
}

var chunkedCoding = []string{"chunked"}

// errIdle408 is the failed write on a pooled connection whose server had
// sent an idle close's 408 Request Timeout.
var errIdle408 = errors.New("h1client: the pooled connection was closed by the server (408 Request Timeout on the idle connection)")

func noStop() bool { return true }

// release ends the connection's use by one request: back to the pool if
// the response ended cleanly and the connection may be reused, and the
// context has not begun closing it; closed otherwise.
func (cn *conn) release(stop func() bool, reusable bool) {
	if stop() && reusable {
		cn.reused = false
		cn.br.release()
		cn.c.put(cn)
		return
	}
	cn.close()
}

// connWriteFailed reports whether err is a write to the connection that
// failed, not a read of the request body's source: io.Copy returns
// either, and TCPConn.ReadFrom wraps both in a "readfrom" error, so the
// chain is walked for the write itself.
func connWriteFailed(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if op, ok := err.(*net.OpError); ok && op.Op == "write" {
			return true
		}
	}
	return false
}

// Unanswered reports whether err is RoundTrip's failure on a pooled
// keep-alive connection before one byte of a response came (stale: the
// race of a request sent as the server closed the connection, which HTTP
// cannot tell from a server that took the request and died), and whether
// the request also did not leave whole (unsent: a write failed, so the
// server cannot have acted on it). A request that may be sent again
// (net/http's Transport replays idempotent ones, nginx's
// proxy_next_upstream counts it as "error") is the caller's decision.
func Unanswered(err error) (stale, unsent bool) {
	var e *exchangeError
	if !errors.As(err, &e) || !e.reused || !e.noResponse && !e.unsent {
		return false, false
	}
	return true, e.unsent
}

// retryable follows net/http's rule for a pooled connection that failed:
// again if nothing was written and the whole request is at hand, or if
// no response byte came and the request is replayable (idempotent).
func retryable(ctx context.Context, req *http.Request, err error, out encoded) bool {
	var e *exchangeError
	if ctx.Err() != nil || !out.whole() || !errors.As(err, &e) {
		return false
	}
	return e.nothingWritten || e.noResponse && replayable(req)
}

func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// hostPort is the dial address: the URL's host with port 80 by default.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}
