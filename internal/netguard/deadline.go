package netguard

import (
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"time"
)

// readDeadline holds a connection's read deadline until a read needs it.
//
// net/http and the gateway move a keep-alive connection's read deadline
// about eight times per request (the idle wait, the head, the whole
// request, the body's gap and its lifting, the background read's end),
// and most of those are replaced before any read could block on them:
// a small request arrives whole in the read that ends the idle wait, so
// its head and body are read from net/http's buffer. Each move on the
// socket is a runtime timer update under the poller's lock (~0.15 µs
// here, measured in docs/BENCHMARKS.md §9). A deadline matters only to a
// read, so it is kept here and handed to the socket when a read starts;
// a read already waiting gets it at once if it is earlier (net/http ends
// its background read that way).
//
// A deadline later than the socket's, or none, is not handed over while
// the socket's is still ahead (writeDeadline does the same for writes):
// net/http lifts the deadline for its background read right after the
// idle wait's read armed the socket with the idle timeout, and ends that
// read with a deadline in the past, which replaces the socket's either
// way. A read cut by the socket's earlier deadline goes on under the one
// last set (resume). What a client can observe is unchanged: a read never
// waits past the deadline last set and is never cut before it, and one
// that starts after it has passed fails at once, as on the socket.
//
// Deadlines are held as wall-clock Unix nanoseconds (nanos), not as
// time.Time: set runs about eight times per request, and each comparison
// of two time.Time values (Equal, Before, IsZero, each choosing between
// the wall and the monotonic reading) spans code lines where two int64s
// take one compare; an int64 is also stored without the collector's write
// barrier (a time.Time holds a *Location). The socket is handed a
// time.Time (deadlineTime) only when its deadline must move. Without the
// monotonic reading, a wall-clock step between a deadline's setting and
// its reaching the socket moves it by the step, and a comparison across
// the step may keep the socket's one in place up to that one's horizon
// (a timeout) past the one set: bounded, as a step is rare; a deadline
// read as passed only for lying before the listener's start is checked
// against the clock (passed).
type readDeadline struct {
	mu      sync.Mutex
	pending int64 // the deadline last set (nanos; 0 = none)
	applied int64 // the socket's
	reading int   // reads in progress
	// expired: a read failed since the socket's deadline was last moved,
	// so it may have passed; the next read hands over the one last set.
	expired bool
	// past is an instant that has passed (the listener's start): a read
	// that starts under a deadline before it fails at once, as on the
	// socket, without moving the socket's (conn.Read). net/http's
	// background read, when its goroutine has not run before the handler
	// returned (one P), starts after net/http ended it with such a deadline:
	// moving the socket's there only to have the next read move it back
	// would be two timer updates per request.
	past int64
}

// longAgo is net/http's aLongTimeAgo, time.Unix(1, 0), as nanos: the
// deadline it ends its background read with, as do Restore and Close.
const longAgo = 1_000_000_000

// passed reports whether the deadline last set, which lies before past,
// has passed. past and the deadlines are wall-clock readings, and the wall
// clock may have been stepped back since past was read (NTP correcting a
// clock that ran ahead at boot, a VM restored): a deadline set from now
// may then lie before past without having passed. net/http's (longAgo)
// and earlier ones have passed; for a later one the clock is read, and
// when the deadline is ahead of it past is lowered to it (an instant that
// has passed), so the connection's next reads go straight on.
func (d *readDeadline) passed() bool {
	if d.pending <= longAgo {
		return true
	}
	now := nanos(time.Now())
	if d.pending < now {
		return true
	}
	d.past = now
	return false
}

// errPassed is the error of a read that starts under a deadline that has
// passed, as the socket's (net/http asks for a net.Error whose Timeout is
// true when it ends its background read that way).
var errPassed error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// maxDeadlineSec bounds the deadlines nanos can hold (about the year 2262,
// past which UnixNano is undefined): a later one is held as
// math.MaxInt64, one earlier than its negative as math.MinInt64.
const maxDeadlineSec = math.MaxInt64/1_000_000_000 - 1

// nanos is t as a deadline held here: the Unix nanoseconds of its wall
// clock, 0 for none (the zero time, which lies before -maxDeadlineSec). A
// deadline at the Unix epoch itself is held as -1, which has passed as
// well. Small enough to be inlined where a deadline is set: the
// conversion of a time other than none is apart (wallNanos), as the two
// together were not (cost 135 > 80), and a call each of the ~8 times per
// request cost a hit ~6 code lines (docs/BENCHMARKS.md §9, branch hit13).
func nanos(t time.Time) int64 {
	if t == (time.Time{}) {
		return 0 // net/http's "none", about half of its calls: no clock reading to convert
	}
	return wallNanos(t)
}

// wallNanos is nanos of a time other than the zero one.
func wallNanos(t time.Time) int64 {
	sec := t.Unix()
	if uint64(sec+maxDeadlineSec) > 2*maxDeadlineSec {
		return farNanos(t)
	}
	if n := sec*1e9 + int64(t.Nanosecond()); n != 0 {
		return n
	}
	return -1
}

// farNanos is nanos of a time outside ±maxDeadlineSec: none, or one of
// the bounds.
func farNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Unix() > 0:
		return math.MaxInt64
	}
	return math.MinInt64
}

// deadlineTime is a deadline held here as the socket takes it.
func deadlineTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// setBoth sets both of the socket's deadlines (net.Conn's SetDeadline).
func (d *readDeadline) setBoth(t time.Time, sock net.Conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := sock.SetDeadline(t); err != nil {
		return err
	}
	n := nanos(t)
	d.pending, d.applied, d.expired = n, n, false
	return nil
}

// mustApply reports whether the socket's deadline cannot stand for the
// one last set: the socket has none while one is set, the one set is
// earlier, or the socket's may have passed (expired).
func (d *readDeadline) mustApply() bool {
	if d.pending == d.applied {
		return false
	}
	return d.expired || d.applied == 0 || (d.pending != 0 && d.pending < d.applied)
}

// resume is asked after a read failed (err): if the socket's deadline cut
// it while the one last set is later, or none, and has not passed, it
// hands the one last set to the socket and says the read goes on.
func (d *readDeadline) resume(err error, sock net.Conn) bool {
	d.mu.Lock()
	left := d.pending != d.applied
	d.mu.Unlock()
	if !left || !isTimeout(err) {
		return false // the deadline that passed is the one set, or no deadline cut it
	}
	// Socket deadlines are wall-clock times: time.Now, not an injected clock.
	now := nanos(time.Now())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == d.applied || (d.pending != 0 && now >= d.pending) {
		return false
	}
	return d.applyLocked(sock) == nil
}

func (d *readDeadline) applyLocked(sock net.Conn) error {
	if err := sock.SetReadDeadline(deadlineTime(d.pending)); err != nil {
		return err
	}
	d.applied, d.expired = d.pending, false
	return nil
}

// writeDeadline keeps a connection's write deadline on the socket only
// when it must be there.
//
// The gateway moves the write deadline before every answer (the send
// timeout, gateway.sendWriter) and net/http lifts it after every request:
// two runtime timer updates per request on a keep-alive connection, each
// under the poller's lock, with two clock reads. A write deadline matters
// only to a write that waits, and a deadline later than the socket's, or
// none, can wait until a write meets the socket's: so a later deadline
// leaves the socket's earlier one in place, and a write that meets that
// one goes on under the deadline last set (Write: the one set then reaches
// the socket). A deadline earlier than the socket's, or the first one,
// reaches the socket at once, so a write already waiting is cut by it. What
// a client can observe is unchanged: a write never waits past the deadline
// last set and is never cut before it. On a connection answering request
// after request the socket keeps one deadline until it passes (a send
// timeout later), then takes the one set then.
// Its deadlines are held as readDeadline's are (nanos).
type writeDeadline struct {
	mu      sync.Mutex
	pending int64 // the deadline last set (nanos; 0 = none)
	applied int64 // the socket's
}

// resume is asked after a write failed with a timeout: if the deadline
// that passed was the socket's, earlier than the one last set (or with
// none set since), it hands the one last set to the socket and says the
// write goes on.
func (d *writeDeadline) resume(sock net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	// set keeps the socket's deadline only while the one set is later or
	// none; equal, the deadline that passed is the one set.
	if d.pending == d.applied {
		return false
	}
	return d.applyLocked(sock) == nil
}

func (d *writeDeadline) applyLocked(sock net.Conn) error {
	if err := sock.SetWriteDeadline(deadlineTime(d.pending)); err != nil {
		return err
	}
	d.applied = d.pending
	return nil
}

// writeAll writes p to w, going on under the deadline last set when the
// socket's (sock's) earlier one cut the write (resume). Small enough to be
// inlined into every write; the rest is writeRest's.
func (d *writeDeadline) writeAll(w, sock net.Conn, p []byte) (int, error) {
	n, err := w.Write(p)
	if err != nil && n < len(p) {
		return d.writeRest(w, sock, p, n, err)
	}
	return n, err
}

// writeRest goes on with a write of p that wrote n bytes and failed with
// err, while the socket's deadline cut it and the one last set has not
// passed (resume).
func (d *writeDeadline) writeRest(w, sock net.Conn, p []byte, n int, err error) (int, error) {
	for err != nil && n < len(p) && errors.Is(err, os.ErrDeadlineExceeded) && d.resume(sock) {
		var m int
		m, err = w.Write(p[n:])
		n += m
	}
	return n, err
}
