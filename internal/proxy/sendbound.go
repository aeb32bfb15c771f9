package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// The send bound of requests net/http's transport carries (https://
// backends, HTTP/1.1 over TLS or HTTP/2, and http:// ones under
// upstream_client: net/http): the same bound the lean client puts on its
// body writes (h1client.Options.SendIdleTimeout, timeouts.stream_idle,
// nginx's proxy_send_timeout), with the same outcome, ErrSendTimeout.
// net/http gives no write deadline to hook, so progress is the transport
// pulling the body: it reads a piece only once the previous one went out
// (HTTP/1.1: into the socket through its 4 KiB buffer; HTTP/2: into the
// stream's flow-control window), so a backend that stops reading stops
// the pulls once its socket or window is full. The bound is checked
// sendBoundChecks times per stream_idle from a timer, no goroutine: a
// transport that pulled nothing for stream_idle is cut between
// stream_idle and 1.25 x it after its last pull, as the lean client's
// plain sockets are.

// sendBoundChecks is how many times within the bound its timer looks for
// progress (h1client's sendChecks).
const sendBoundChecks = 4

// sendBoundFrom is the smallest body watched: the lean client leaves a
// body that fits its first write (head and 32 KiB) unwatched, and a
// smaller one leaves in one write with the head (net/http flushes the
// head on its own for a body it does not know is in memory).
const sendBoundFrom = 32 << 10

// sendPiece is the most of the body one pull hands the transport. The
// transport pulls the next piece only once it has sent the last whole,
// so a piece is the step progress is seen in: HTTP/2 reads up to 512 KiB
// at once from a backend that advertises large frames (Go's server: 1
// MiB), which a backend reading steadily at under 8.7 KB/s would take
// longer than the default bound to drain; 16 KiB (HTTP/2's default frame,
// one TLS record) is seen at 273 B/s. HTTP/1.1 over TLS pulls 32 KiB.
const sendPiece = 16 << 10

// errSendStalled is the cause a watched request is cancelled with: the
// transport pulled none of its body for the bound.
var errSendStalled = errors.New("net/http's transport pulled none of the request body within the send idle timeout")

// sendBound states.
const (
	boundWatching int32 = iota
	boundDone           // the body was written whole, or the round trip ended
	boundCut            // the timer cancelled the request
)

// sendBound watches one request's body on its way through net/http.
type sendBound struct {
	idle  time.Duration
	pulls atomic.Uint64 // the transport's reads that returned bytes
	state atomic.Int32
	// seen and quiet are the timer's: the pulls at its last look, and
	// how many looks in a row saw no new one.
	seen  uint64
	quiet int
	mu    sync.Mutex // timer: set by start, which its first tick may beat
	timer Timer
	// cancel ends the request's own context (a child of the attempt's),
	// with errSendStalled as its cause.
	cancel context.CancelCauseFunc
	// conn is the connection of an HTTP/1.1 exchange, reset (SO_LINGER 0)
	// when cut, as the lean client resets its stalled connections: a
	// plain close would leave its unsent body to the kernel, retried to
	// a backend that reads none (FIN-WAIT-1). An HTTP/2 stream is reset
	// by the cancel alone (RST_STREAM), its connection untouched.
	conn  atomic.Pointer[net.TCPConn]
	trace httptrace.ClientTrace
	first boundBody
}

// boundBody is one body the transport pulls (the request's, or one its
// GetBody made for a retry on a new connection).
type boundBody struct {
	rc io.ReadCloser
	b  *sendBound
}

// Read counts a pull. The body's last pull does not end the watch: the
// piece has still to go out (HTTP/2: it waits for the backend's window
// after the pull; HTTP/1.1: for room in the socket), so the watch ends
// when the transport reports the request written (wrote).
func (bb *boundBody) Read(p []byte) (int, error) {
	if len(p) > sendPiece {
		p = p[:sendPiece]
	}
	n, err := bb.rc.Read(p)
	if n > 0 {
		bb.b.pulls.Add(1)
	}
	return n, err
}

func (bb *boundBody) Close() error { return bb.rc.Close() }

// watchSend reports whether req, which net/http's transport is to send,
// has a body large enough to watch.
func watchSend(req *http.Request, idle time.Duration) bool {
	return idle > 0 && req.Body != nil && req.Body != http.NoBody &&
		(req.ContentLength > sendBoundFrom || req.ContentLength < 0)
}

// roundTripBounded sends req through rt under the send bound idle
// (after: the timer's clock). A cut request fails with ErrSendTimeout.
func roundTripBounded(rt func(*http.Request) (*http.Response, error), req *http.Request, idle time.Duration, after func(time.Duration, func()) Timer) (*http.Response, error) {
	b := &sendBound{idle: idle}
	ctx, cancel := context.WithCancelCause(req.Context())
	b.cancel = cancel
	b.trace.GotConn = b.gotConn
	b.trace.WroteRequest = b.wrote
	out := req.WithContext(httptrace.WithClientTrace(ctx, &b.trace))
	b.first = boundBody{rc: req.Body, b: b}
	out.Body = &b.first
	if getBody := req.GetBody; getBody != nil {
		out.GetBody = func() (io.ReadCloser, error) {
			rc, err := getBody()
			if err != nil {
				return nil, err
			}
			return &boundBody{rc: rc, b: b}, nil
		}
	}
	b.mu.Lock()
	b.timer = after(idle/sendBoundChecks, b.tick)
	b.mu.Unlock()
	resp, err := rt(out)
	b.end()
	if b.state.Load() == boundCut {
		if resp != nil { // the head came as the bound cut: the cut stands
			resp.Body.Close()
		}
		return nil, fmt.Errorf("%w: %w (%v)", ErrSendTimeout, errSendStalled, idle)
	}
	if err != nil {
		cancel(nil)
	}
	// Otherwise ctx lives on with the answer's body (net/http watches it
	// while the relay reads); the attempt's cancel ends it.
	return resp, err
}

// gotConn keeps the connection of an HTTP/1.1 exchange for the reset.
func (b *sendBound) gotConn(info httptrace.GotConnInfo) {
	if tc := tcpUnder(info.Conn); tc != nil {
		b.conn.Store(tc)
	}
}

// tcpUnder is the TCP connection under nc, nil when nc carries HTTP/2
// (other streams share it) or is not TCP.
func tcpUnder(nc net.Conn) *net.TCPConn {
	for nc != nil {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c
		case *tls.Conn:
			if c.ConnectionState().NegotiatedProtocol == "h2" {
				return nil
			}
			nc = c.NetConn()
		case *countedConn:
			nc = c.Conn
		default:
			return nil
		}
	}
	return nil
}

// wrote ends the watch once the transport wrote the request whole
// (HTTP/2: its last DATA frame, after the backend's window let it go;
// HTTP/1.1: the body into the socket). A failed write does not: the
// transport may retry it on a new connection (GetBody), under the watch;
// if it does not, its round trip returns, which ends the watch.
func (b *sendBound) wrote(info httptrace.WroteRequestInfo) {
	if info.Err == nil {
		b.end()
	}
}

// end stops the watch: the body was written whole, or the round trip
// ended (a head came: from then the answer's idle bound, stream_idle on
// the relay's reads, watches the exchange; or an error).
func (b *sendBound) end() {
	if b.state.CompareAndSwap(boundWatching, boundDone) {
		b.mu.Lock()
		if b.timer != nil {
			b.timer.Stop()
		}
		b.mu.Unlock()
	}
}

// tick is the timer's look for progress; it cuts the request after
// sendBoundChecks looks in a row saw no pull (none before the first:
// the transport is still connecting or waiting for a stream).
func (b *sendBound) tick() {
	if b.state.Load() != boundWatching {
		return
	}
	if p := b.pulls.Load(); p == 0 || p != b.seen {
		b.seen, b.quiet = p, 0
	} else if b.quiet++; b.quiet >= sendBoundChecks {
		if !b.state.CompareAndSwap(boundWatching, boundCut) {
			return
		}
		if tc := b.conn.Load(); tc != nil {
			tc.SetLinger(0) // the transport's close on the cancel resets it
		}
		b.cancel(errSendStalled)
		return
	}
	b.mu.Lock()
	if b.state.Load() == boundWatching {
		b.timer.Reset(b.idle / sendBoundChecks)
	}
	b.mu.Unlock()
}
