package netguard

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Linger bounds a lingering close (nginx lingering_close): when the server
// answers and closes while the client is still sending (a 431 for an
// oversized header, a 413 or 503 refusing a body, a 408), closing at once
// would make the kernel answer the client's next segments with a reset,
// and a reset makes most clients drop the answer unread. So the server
// half-closes, reads and discards what still comes until the client
// closes too or a bound runs out, and only then closes. The connection
// keeps its slot under the connection caps meanwhile.
type Linger struct {
	Time    time.Duration // the whole drain (nginx lingering_time); 0: no lingering
	Timeout time.Duration // the longest wait for the next bytes (nginx lingering_timeout)
	// Bytes is the most bytes discarded from one connection, those a
	// discard of a refused body's rest read before the close included
	// (one budget: waited.read).
	Bytes int64
}

// DefaultLinger is nginx's lingering_time 30s and lingering_timeout 5s,
// with at most 64 MiB discarded (eight times max_body_bytes, two and a
// half times max_audio_body_bytes, by default: enough to outlast a client
// that sends its whole oversized body before reading).
func DefaultLinger() Linger {
	return Linger{Time: 30 * time.Second, Timeout: 5 * time.Second, Bytes: 64 << 20}
}

// How a lingering close ended (sluice_connection_lingers_total).
const (
	LingerEOF      = "eof"      // the client closed: the answer was read
	LingerTimeout  = "timeout"  // lingering_timeout or lingering_time ran out
	LingerBytes    = "bytes"    // the byte bound ran out
	LingerShutdown = "shutdown" // the listener closed
	LingerError    = "error"    // the client reset or the read failed
)

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets LingerOnClose find a
// request's connection.
func (l *Listener) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if gc := unwrap(c); gc != nil {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

// ConnMemo is a slot shared by the requests of the connection ctx's
// request came on, for a handler's memo of what is the same for all of
// them (what the peer address resolves to): it lives and goes with the
// connection, so it needs no bound of its own. Requests of one connection
// may run at once (HTTP/2), hence the atomic value; a handler stores one
// type in it. nil without a netguard connection.
func ConnMemo(ctx context.Context) *atomic.Value {
	if c, ok := ctx.Value(connKey{}).(*conn); ok {
		return &c.memo
	}
	return nil
}

// LingerOnClose asks for a lingering close of the connection ctx's request
// came on, whenever the server closes it: for answers sent while the
// request body is still arriving, where net/http would not ask for one
// (it does only when more than 256 KiB of a body is left unread). Call it
// with a "Connection: close" answer. Without a netguard connection it does
// nothing.
func LingerOnClose(ctx context.Context) {
	if c, ok := ctx.Value(connKey{}).(*conn); ok {
		c.linger.Store(true)
	}
}

// connOf is the netguard connection ctx's request came on, or nil.
func connOf(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// errEnded fails every read of a connection that serves no further
// request (endAfterAnswer). Not a timeout: no idle or header timeout is
// counted for it.
var errEnded = errors.New("the connection serves no further request: a request body was left unread")

// endAfterAnswer makes c serve no further request although its answer has
// gone out without Connection: close: its reads fail from now (errEnded),
// so net/http's close of the unread body reads nothing more, and the
// close lingers. Alone it is not enough: net/http may have buffered the
// rest and a request after it (closeAfterAnswer aborts the handler too).
func (c *conn) endAfterAnswer() {
	c.linger.Store(true)
	c.ended.Store(true)
}

// errShutdown fails a discard's read once the listener has closed.
var errShutdown = errors.New("the listener closed: the server is shutting down")

// discardStarted counts c as discarding a refused body's rest
// (TimedBody.answerThenDiscard), for Close to cut; false once the listener
// has closed. discardEnded must follow a true.
func (l *Listener) discardStarted(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.discarding[c] = struct{}{}
	return true
}

func (l *Listener) discardEnded(c *conn) {
	l.mu.Lock()
	delete(l.discarding, c)
	l.mu.Unlock()
}

// CloseWrite is what net/http calls, through its closeWriter interface,
// when it has answered a request whose client may still be sending (the
// 431 it writes itself, a body left unread): it half-closes, then closes
// the connection a moment later. Close lingers instead of resetting.
func (c *conn) CloseWrite() error {
	c.linger.Store(true)
	return c.closeWrite()
}

func (c *conn) closeWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// linger drains c within the listener's Linger bounds, counted as
// lingering meanwhile; Listener.Close cuts it short.
func (l *Listener) linger(c *conn) {
	l.mu.Lock()
	lim := l.limits.Linger
	if l.closed || lim.Time <= 0 || lim.Timeout <= 0 {
		l.mu.Unlock()
		return
	}
	l.lingering[c] = struct{}{}
	l.mu.Unlock()
	l.m.lingerStarted()

	// Again if net/http did already: a repeated half-close is harmless,
	// and a failed one (the client reset) shows as a failed read.
	c.closeWrite()
	buf := l.discard.Get().(*[]byte)
	l.m.lingerEnded(l.drain(c.raw, lim, *buf, c.waited))
	l.discard.Put(buf)

	l.mu.Lock()
	delete(l.lingering, c)
	l.mu.Unlock()
}

// waited is what a discard of a refused body's rest already waited and
// read before its close lingers (TimedBody.closeAfterAnswer): the answer
// went out at since, the client last sent at quiet, and read bytes of the
// rest were dropped, which count toward the close's byte bound. The zero
// value: none.
type waited struct {
	since, quiet time.Time
	read         int64
}

// lingerFloor is the least wait of a lingering close's first read, so
// that it takes what is already in the receive buffer (a close with
// unread bytes resets) even when the discard waited the whole timeout.
const lingerFloor = time.Millisecond

// bounds is when a lingering close starting at now, after w, ends
// (end: lingering_time) and its first read gives up (first:
// lingering_timeout). Both count from what the discard already waited:
// the answer went out when it began, so the client has had the answer
// for as long, and has been quiet since w.quiet. Counting again from now
// held a stalled client's connection a discard gap longer (branch
// keepconn2); the client still gets lingering_timeout of quiet after its
// answer before the close, which is what spares it the reset.
func (lim Linger) bounds(now time.Time, w waited) (end, first time.Time) {
	end, first = now.Add(lim.Time), now.Add(lim.Timeout)
	if !w.since.IsZero() {
		end = w.since.Add(lim.Time)
	}
	if !w.quiet.IsZero() {
		first = w.quiet.Add(lim.Timeout)
	}
	if first.After(end) {
		first = end
	}
	if floor := now.Add(lingerFloor); first.Before(floor) {
		first = floor
	}
	if end.Before(first) {
		end = first
	}
	return end, first
}

// drain reads into buf and discards from c until the client closes or a
// bound of lim runs out, and says which. w is what a discard already
// waited (bounds) and read: the byte bound is one budget for both, so a
// client cannot make the gateway read the discard's bytes and then the
// lingering close's whole bound again. No read goes past the budget.
func (l *Listener) drain(c net.Conn, lim Linger, buf []byte, w waited) string {
	read := w.read
	if read >= lim.Bytes {
		return LingerBytes
	}
	// Socket deadlines are wall-clock times: time.Now, not an injected clock.
	end, deadline := lim.bounds(time.Now(), w)
	for first := true; ; first = false {
		if !first {
			deadline = time.Now().Add(lim.Timeout)
			if deadline.After(end) {
				deadline = end
			}
		}
		var setErr error
		if !l.unlessClosed(func() error { setErr = c.SetReadDeadline(deadline); return setErr }) {
			if setErr != nil {
				return LingerError
			}
			return LingerShutdown
		}
		p := buf
		if left := lim.Bytes - read; left < int64(len(p)) {
			p = p[:left]
		}
		n, err := c.Read(p)
		read += int64(n)
		switch {
		case errors.Is(err, io.EOF):
			return LingerEOF
		case err != nil && isTimeout(err):
			if l.isClosed() {
				return LingerShutdown
			}
			return LingerTimeout
		case err != nil:
			return LingerError
		case read >= lim.Bytes:
			return LingerBytes
		}
	}
}

// Close stops accepting, cuts every lingering close, every discard of a
// refused body's rest and every refusal short (a server shutting down does not wait lingering_time for clients
// that are already answered), and waits for the refusal tier to empty.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	past := time.Unix(1, 0)
	for c := range l.lingering {
		c.raw.SetReadDeadline(past)
	}
	// Through the connection's own deadline, which its reads hand to the
	// socket (readDeadline): the raw socket's would be resumed past.
	for c := range l.discarding {
		c.SetReadDeadline(past)
	}
	for c := range l.tier.conns {
		c.SetDeadline(past)
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	l.tier.wg.Wait()
	return err
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// unwrap finds the netguard connection, which is the server's own when the
// listener wraps the others (Wrap), or lies under wrappers that expose
// NetConn.
func unwrap(c net.Conn) *conn {
	for {
		if gc, ok := c.(*conn); ok {
			return gc
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = w.NetConn()
	}
}
