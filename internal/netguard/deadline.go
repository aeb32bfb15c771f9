package netguard

import (
	"errors"
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
type readDeadline struct {
	mu      sync.Mutex
	pending time.Time // the deadline last set
	applied time.Time // the socket's
	reading int       // reads in progress
	// expired: a read failed since the socket's deadline was last moved,
	// so it may have passed; the next read hands over the one last set.
	expired bool
	// past is an instant that has passed (the listener's start): a read
	// that starts under a deadline before it fails at once, as on the
	// socket, without moving the socket's (start).
	past time.Time
}

// errPassed is the error of a read that starts under a deadline that has
// passed, as the socket's (net/http asks for a net.Error whose Timeout is
// true when it ends its background read that way).
var errPassed error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// set records t, and hands it to the socket now if a read is waiting and
// must not wait past it.
func (d *readDeadline) set(t time.Time, sock net.Conn) error {
	d.mu.Lock()
	d.pending = t
	var err error
	if d.reading > 0 && d.mustApply() {
		err = d.applyLocked(sock)
	}
	d.mu.Unlock() // not deferred: this runs ~6 times per request
	return err
}

// setBoth sets both of the socket's deadlines (net.Conn's SetDeadline).
func (d *readDeadline) setBoth(t time.Time, sock net.Conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := sock.SetDeadline(t); err != nil {
		return err
	}
	d.pending, d.applied, d.expired = t, t, false
	return nil
}

// start hands the deadline last set to the socket, if the socket's may
// not stand for it, before a read; done must follow the read. A deadline
// set before d.past has passed: the read fails with errPassed, and the
// socket keeps its own. net/http's background read, when its goroutine
// has not run before the handler returned (one P), starts after net/http
// ended it with such a deadline: moving the socket's there only to have
// the next read move it back would be two timer updates per request.
func (d *readDeadline) start(sock net.Conn) error {
	d.mu.Lock()
	if !d.pending.IsZero() && d.pending.Before(d.past) {
		d.mu.Unlock()
		return errPassed
	}
	var err error
	if d.mustApply() {
		err = d.applyLocked(sock)
	}
	if err == nil {
		d.reading++
	}
	d.mu.Unlock() // not deferred: this runs before every read
	return err
}

// done follows a read; err is the read's.
func (d *readDeadline) done(err error) {
	d.mu.Lock()
	d.reading--
	if err != nil {
		d.expired = true
	}
	d.mu.Unlock()
}

// mustApply reports whether the socket's deadline cannot stand for the
// one last set: the socket has none while one is set, the one set is
// earlier, or the socket's may have passed (expired).
func (d *readDeadline) mustApply() bool {
	if d.pending.Equal(d.applied) {
		return false
	}
	return d.expired || d.applied.IsZero() || (!d.pending.IsZero() && d.pending.Before(d.applied))
}

// resume is asked after a read failed (err): if the socket's deadline cut
// it while the one last set is later, or none, and has not passed, it
// hands the one last set to the socket and says the read goes on.
func (d *readDeadline) resume(err error, sock net.Conn) bool {
	d.mu.Lock()
	left := !d.pending.Equal(d.applied)
	d.mu.Unlock()
	if !left || !isTimeout(err) {
		return false // the deadline that passed is the one set, or no deadline cut it
	}
	// Socket deadlines are wall-clock times: time.Now, not an injected clock.
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending.Equal(d.applied) || (!d.pending.IsZero() && !now.Before(d.pending)) {
		return false
	}
	return d.applyLocked(sock) == nil
}

func (d *readDeadline) applyLocked(sock net.Conn) error {
	if err := sock.SetReadDeadline(d.pending); err != nil {
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
type writeDeadline struct {
	mu      sync.Mutex
	pending time.Time // the deadline last set
	applied time.Time // the socket's
}

// set records t, and hands it to the socket now if it is earlier than the
// socket's or the socket has none.
func (d *writeDeadline) set(t time.Time, sock net.Conn) error {
	d.mu.Lock()
	d.pending = t
	var err error
	if !t.IsZero() && (d.applied.IsZero() || t.Before(d.applied)) {
		err = d.applyLocked(sock)
	}
	d.mu.Unlock() // not deferred: this runs twice per request
	return err
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
	if d.pending.Equal(d.applied) {
		return false
	}
	return d.applyLocked(sock) == nil
}

func (d *writeDeadline) applyLocked(sock net.Conn) error {
	if err := sock.SetWriteDeadline(d.pending); err != nil {
		return err
	}
	d.applied = d.pending
	return nil
}

// writeAll writes p to w, going on under the deadline last set when the
// socket's (sock's) earlier one cut the write (resume).
func (d *writeDeadline) writeAll(w, sock net.Conn, p []byte) (int, error) {
	n, err := w.Write(p)
	for err != nil && n < len(p) && errors.Is(err, os.ErrDeadlineExceeded) && d.resume(sock) {
		var m int
		m, err = w.Write(p[n:])
		n += m
	}
	return n, err
}
