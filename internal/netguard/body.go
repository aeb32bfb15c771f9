package netguard

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// ErrBodyTimeout matches every *BodyTimeoutError.
var ErrBodyTimeout = errors.New("request body timeout")

// BodyTimeoutError is a request body cut because it did not arrive in time.
// Its text names the bound, never a Go type: it may reach the client.
type BodyTimeoutError struct {
	Total bool          // the whole-body budget ran out, not the gap between reads
	Limit time.Duration // the bound that ran out
}

func (e *BodyTimeoutError) Error() string {
	if e.Total {
		return "the request body did not arrive within " + e.Limit.String()
	}
	return "no request body data arrived for " + e.Limit.String()
}

// Is makes errors.Is(err, ErrBodyTimeout) true.
func (e *BodyTimeoutError) Is(target error) bool { return target == ErrBodyTimeout }

// BodyTimeouts bound the time a request body may take to arrive.
type BodyTimeouts struct {
	// Gap is the longest wait for the next bytes (nginx
	// client_body_timeout: "set only for a period between two successive
	// read operations, not for the transmission of the whole body").
	Gap time.Duration
	// Total bounds the whole body from when the handler starts reading.
	Total time.Duration
	// Discard bounds reading the rest of a body the handler left unread,
	// after its answer went out (TimedBody.Restore); a zero field takes
	// DefaultDiscard's.
	Discard Discard
}

// Discard bounds the read of a body's unread rest after the answer (nginx
// discards a refused body after answering; net/http before, up to 256
// KiB): the connection serves the next request only when the rest
// arrives whole within them, else it closes.
type Discard struct {
	Bytes int64         // the most bytes read and dropped
	Gap   time.Duration // the longest wait for the next bytes
	Total time.Duration // the whole read
}

// DefaultDiscard is net/http's 256 KiB (maxPostHandlerReadBytes), with at
// most 1 s between reads and 5 s in all: a client that sent its body
// before reading the answer has the rest in flight, so only a stalled or
// very slow one waits that long, and each waiting holds a handler's
// goroutine (no more than the lingering close would hold it).
func DefaultDiscard() Discard {
	return Discard{Bytes: 256 << 10, Gap: time.Second, Total: 5 * time.Second}
}

func (d Discard) orDefault() Discard {
	def := DefaultDiscard()
	if d.Bytes <= 0 {
		d.Bytes = def.Bytes
	}
	if d.Gap <= 0 {
		d.Gap = def.Gap
	}
	if d.Total <= 0 {
		d.Total = def.Total
	}
	return d
}

// TimedBody makes r.Body fail with a *BodyTimeoutError when the client
// sends no bytes for t.Gap, or has not finished after t.Total (Start).
// Each read sets the connection's read deadline (http.ResponseController),
// so a stalled read is really unblocked and its goroutine freed; after a timeout
// the response says Connection: close, since the rest of the body is still
// on the wire. The first deadline is set at once, so that even a read of
// the body no handler made (net/http's) never waits on a stalled client
// forever.
// A writer without deadlines (a job replaying a stored request through the
// handler) reads untimed: its body is already in memory.
//
// Start it before any handler reads the body, and Restore it when the
// handler is done, before net/http writes the answer: it closes the
// connection after an answer that left the body unread (Restore). It
// is a value so that a caller holds it within its own per-request state
// (one allocation less per request). The zero value restores nothing.
type TimedBody struct {
	r    *http.Request
	orig io.ReadCloser
	body timedBody
}

// Start times r's body with t from now; m may be nil.
func (b *TimedBody) Start(w http.ResponseWriter, r *http.Request, t BodyTimeouts, now func() time.Time, m *BodyMetrics) {
	b.StartAt(w, r, t, now(), now, m)
}

// StartAt is Start for a caller that has just read the clock (now() ==
// start): the budgets start from start, which saves two clock reads.
func (b *TimedBody) StartAt(w http.ResponseWriter, r *http.Request, t BodyTimeouts, start time.Time, now func() time.Time, m *BodyMetrics) {
	orig := r.Body
	if orig == nil || orig == http.NoBody {
		return
	}
	b.r, b.orig = r, orig
	b.body = timedBody{ReadCloser: orig, ctx: r.Context(), w: w, rc: *http.NewResponseController(w), deadlines: true,
		t: t, end: start.Add(t.Total), now: now, m: m}
	b.body.armAt(start)
	r.Body = &b.body
}

// Restore puts back the request's own body. A nil *TimedBody restores
// nothing.
//
// A body the handler left neither read to its end nor timed out (an
// answer given before reading it: 401, 404, 405, a refusal) is still
// arriving, and net/http would discard its rest (up to 256 KiB, or a
// chunked one) before it writes the answer's head, under this body's
// deadline: a client that stalls got its answer only at body_read_timeout,
// by when send_timeout had usually cut the write, so it got none, while
// the access line said it had. So an answer of a known length goes out
// first, and the rest is read and dropped after it, within t.Discard
// (answerThenDiscard): the connection is kept when the rest arrived whole
// in time, as nginx does, and closes otherwise. Any other answer closes
// the connection instead and the read deadline is put in the past:
// net/http's discard fails at once and it closes the connection itself
// (its Connection: close; the one set here counts only for a handler that
// never called WriteHeader, as net/http copies the header map there).
// Either close lingers (Linger): it reads and drops what the client still
// sends, within its own bounds. A body read from whose end is in (atEnd)
// keeps its connection. HTTP/2 answers a stream without waiting on its
// body and has no connection to close for it.
func (b *TimedBody) Restore() {
	if b == nil || b.r == nil {
		return
	}
	b.r.Body = b.orig
	if b.body.err != nil || !b.body.deadlines || b.r.ProtoMajor != 1 {
		return
	}
	if b.body.began && b.atEnd() {
		return
	}
	if b.answerThenDiscard() {
		return
	}
	b.body.w.Header().Set("Connection", "close")
	LingerOnClose(b.body.ctx)
	b.body.rc.SetReadDeadline(time.Unix(1, 0)) // long past
}

// answerThenDiscard sends the answer and then reads and drops the body's
// rest within t.Discard, and reports whether it did (false: the caller
// closes the connection before the answer). The connection is kept when
// the rest ended within the bounds; otherwise it serves no further
// request (closeAfterAnswer): the answer has gone out without
// Connection: close, so it is taken from net/http and closed, lingering.
//
// Only an answer whose length the handler declared goes first: flushed
// without one it would be chunked, and its last chunk written only after
// the discard, which a stalled client would wait for. Not either for a
// client that asked Expect: 100-continue (it has not sent the body; net/http
// closes after the answer), a declared length over the byte bound
// (net/http would close too: reading it would be waste), an answer that
// closes anyway (the handler's Connection: close, or the client's:
// r.Close, also HTTP/1.0's; a rest read then would be thrown away with
// the connection), a connection that is not the listener's (its close
// could not linger), or a listener closed (shutting down: net/http
// closes after the answer). The listener's Close cuts a discard under
// way (discardStarted), as it cuts a lingering close: a graceful shutdown
// does not wait for a client already answered.
func (b *TimedBody) answerThenDiscard() bool {
	d := b.body.t.Discard.orDefault()
	h := b.body.w.Header()
	if b.r.Close || b.r.ContentLength > d.Bytes || b.r.Header.Get("Expect") != "" ||
		h.Get("Content-Length") == "" || h.Get("Connection") == "close" {
		return false
	}
	c := connOf(b.body.ctx)
	if c == nil || !c.l.discardStarted(c) {
		return false
	}
	defer c.l.discardEnded(c)
	// Full duplex: net/http writes the head without discarding the body
	// first, so it would not close after a failed flush (the client gone)
	// either: closed here.
	rc := &b.body.rc
	if rc.EnableFullDuplex() != nil {
		return false
	}
	c.l.m.discardStarted()
	if rc.Flush() != nil {
		c.l.m.discardEnded(DiscardError)
		b.closeAfterAnswer(c)
		return true
	}
	now := time.Now()
	r := discardReader{body: b.orig, rc: rc, c: c, gap: d.Gap, end: now.Add(d.Total), quiet: now}
	n, err := io.CopyN(io.Discard, &r, d.Bytes+1)
	if err == io.EOF && n <= d.Bytes {
		c.l.m.discardEnded(DiscardKept)
		rc.SetReadDeadline(time.Time{}) // as Read at EOF: net/http's background read is next
		return true
	}
	c.l.m.discardEnded(discardEnd(n, d.Bytes, err, c.l))
	// The close lingers for what is left of its bounds once the discard's
	// wait and bytes are counted (Linger.bounds, drain), not for them
	// whole again.
	c.waited = waited{since: now, quiet: r.quiet, read: n}
	b.closeAfterAnswer(c)
	return true
}

// How a discard of a refused body's rest ended
// (sluice_connection_discards_total).
const (
	DiscardKept     = "kept"     // the rest arrived: the connection is kept
	DiscardBytes    = "bytes"    // past server.discard.max_bytes
	DiscardTimeout  = "timeout"  // read_timeout or total_timeout ran out
	DiscardShutdown = "shutdown" // the listener closed
	DiscardError    = "error"    // the client closed or reset, a broken chunk, a failed flush
)

// discardEnd names how a discard that read n bytes of at most max, and
// ended with err, failed.
func discardEnd(n, max int64, err error, l *Listener) string {
	switch {
	case n > max:
		return DiscardBytes
	case errors.Is(err, errShutdown) || (isTimeout(err) && l.isClosed()):
		return DiscardShutdown
	case isTimeout(err):
		return DiscardTimeout
	}
	return DiscardError
}

// closeAfterAnswer ends c, whose answer went out without Connection:
// close, when the body's rest did not end within the discard's bounds:
// net/http would read the rest, and the part of it it has buffered, as
// the next request. Hijacked, the connection is net/http's no more; its
// close lingers (the client may still be sending) on a goroutine of its
// own, as net/http's close would on the connection's: the listener bounds
// it, and its Close cuts it.
func (b *TimedBody) closeAfterAnswer(c *conn) {
	c.linger.Store(true)
	nc, _, err := b.body.rc.Hijack()
	if err != nil {
		// A writer that refuses to hijack (net/http's own does not). The
		// socket's reads failing is not enough: net/http's buffer may
		// hold the rest, and a request after it, which it would serve.
		// Aborting the handler makes net/http close the connection
		// without serving another; its close of the body reads nothing
		// more (endAfterAnswer), and the close lingers.
		c.endAfterAnswer()
		panic(http.ErrAbortHandler)
	}
	go nc.Close()
}

// discardReader reads a body's rest under a read deadline of gap from
// each read, and end at the latest: socket deadlines, so time.Now (the
// injected clock may run anywhere). Each deadline is set only while c's
// listener is open, under its lock: its Close, which puts the deadline of
// every discard in the past, is never undone by a later read's.
type discardReader struct {
	body io.Reader
	rc   *http.ResponseController
	c    *conn
	gap  time.Duration
	end  time.Time
	// quiet is when the client last sent (bytes read), or the answer
	// went out: a lingering close after a failed discard counts its
	// timeout from it (Linger.bounds).
	quiet time.Time
}

func (r *discardReader) Read(p []byte) (int, error) {
	deadline := time.Now().Add(r.gap)
	if deadline.After(r.end) {
		deadline = r.end
	}
	var err error
	if !r.c.l.unlessClosed(func() error { err = r.rc.SetReadDeadline(deadline); return err }) {
		if err == nil {
			err = errShutdown
		}
		return 0, err
	}
	n, err := r.body.Read(p)
	if n > 0 {
		r.quiet = time.Now()
	}
	return n, err
}

// endProbe bounds atEnd's wait for a body's end already sent: loopback
// and LAN clients' last bytes are in the socket by then, and a client
// that has not sent them costs the request no more than this.
const endProbe = time.Millisecond

// atEnd reports whether the body a handler read from but stopped short of
// its end (a JSON decoder or multipart reader done at the value's or
// the closing boundary's end) is at its end: only its framing is left (a
// chunked body's last chunk, a newline after the JSON), already sent.
// Without it a chunked upload read whole (POST /v1/files, /v1/batches)
// closed its connection (branch review27). It lifts the read deadline
// when the body is at its end, as Read does at EOF. Never called for a
// body not read from at all (a refusal): reading it would tell an Expect:
// 100-continue client to send it.
func (b *TimedBody) atEnd() bool {
	// The socket's own clock: an injected one may run anywhere.
	if b.body.rc.SetReadDeadline(time.Now().Add(endProbe)) != nil {
		return false
	}
	var probe [1]byte
	if _, err := b.orig.Read(probe[:]); err != io.EOF {
		return false
	}
	b.body.rc.SetReadDeadline(time.Time{})
	return true
}

type timedBody struct {
	io.ReadCloser
	ctx context.Context // the request's: finds its connection for LingerOnClose
	w   http.ResponseWriter
	// rc is held by value (one allocation less per request); deadlines
	// turns false once the writer turned out to have none.
	rc        http.ResponseController
	deadlines bool
	set       time.Time // the read deadline last set (see arm)
	t         BodyTimeouts
	end       time.Time
	now       func() time.Time
	m         *BodyMetrics
	err       error // sticky: a timed-out body stays timed out, an ended one ended
	began     bool  // a handler read from it (TimedBody.atEnd)
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	b.began = true
	total := false
	if b.deadlines {
		total = b.armAt(b.now())
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case err == io.EOF:
		// The whole body is in. From here net/http reads the connection
		// in the background to notice the client going away, and a
		// deadline would cut that read, cancelling the request in the
		// middle of a long answer: lift it, and never arm it again.
		b.err = io.EOF
		if b.deadlines {
			b.rc.SetReadDeadline(time.Time{})
		}
	case b.deadlines && isTimeout(err):
		limit := b.t.Gap
		if total {
			limit = b.t.Total
		}
		b.err = &BodyTimeoutError{Total: total, Limit: limit}
		b.w.Header().Set("Connection", "close")
		LingerOnClose(b.ctx) // what the client did send is still unread
		b.m.timedOut(total)
		return n, b.err
	}
	return n, err
}

// armAt sets the connection's read deadline to the next gap from now or
// the end of the total budget, whichever comes first, and reports which.
func (b *timedBody) armAt(now time.Time) (total bool) {
	if !b.deadlines {
		return false
	}
	deadline := now.Add(b.t.Gap)
	if !deadline.Before(b.end) {
		deadline, total = b.end, true
	}
	if d := deadline.Sub(b.set); d >= 0 && d < rearmAfter {
		return total // the deadline in place is at most rearmAfter earlier
	}
	b.set = deadline
	if err := b.rc.SetReadDeadline(deadline); err != nil {
		b.deadlines = false
	}
	return total
}

// rearmAfter is how far the read deadline may lag before a read moves it:
// the reads of one small body, back to back, set it once instead of each
// time (a runtime timer update per call). Only this body's reads set the
// connection's read deadline until its end, so the one in place is known.
const rearmAfter = time.Millisecond

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
