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
// the access line said it had. So the answer closes the connection
// instead (net/http then writes it at once) and the read deadline is put
// in the past (net/http's own discard at the body's close stops at once):
// the connection's lingering close (Linger) reads and drops what the
// client still sends, within its own bounds. HTTP/2 answers a stream
// without waiting on its body and has no connection to close for it.
func (b *TimedBody) Restore() {
	if b == nil || b.r == nil {
		return
	}
	b.r.Body = b.orig
	if b.body.err == nil && b.body.deadlines && b.r.ProtoMajor == 1 {
		b.body.w.Header().Set("Connection", "close")
		LingerOnClose(b.body.ctx)
		b.body.rc.SetReadDeadline(time.Unix(1, 0)) // long past
	}
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
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
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
