package netguard

import (
	"net"
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
// a read already waiting gets it at once (net/http ends its background
// read that way). What a client can observe is unchanged: a read never
// waits past the deadline last set, and one that starts after it has
// passed fails at once, as on the socket.
type readDeadline struct {
	mu      sync.Mutex
	pending time.Time // the deadline last set
	applied time.Time // the socket's
	reading int       // reads in progress
}

// set records t, and hands it to the socket now if a read is waiting.
func (d *readDeadline) set(t time.Time, sock net.Conn) error {
	d.mu.Lock()
	d.pending = t
	var err error
	if d.reading > 0 {
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
	d.pending, d.applied = t, t
	return nil
}

// start hands the deadline last set to the socket, if it differs from the
// socket's, before a read; done must follow the read.
func (d *readDeadline) start(sock net.Conn) error {
	d.mu.Lock()
	err := d.applyLocked(sock)
	if err == nil {
		d.reading++
	}
	d.mu.Unlock() // not deferred: this runs before every read
	return err
}

func (d *readDeadline) done() {
	d.mu.Lock()
	d.reading--
	d.mu.Unlock()
}

func (d *readDeadline) applyLocked(sock net.Conn) error {
	if d.pending.Equal(d.applied) {
		return nil
	}
	if err := sock.SetReadDeadline(d.pending); err != nil {
		return err
	}
	d.applied = d.pending
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
