package h1client

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// readAlongAfter is how long a body that did not fit the request's
// message is written before the response is read alongside the write.
// A backend may answer before it has read the body (a body limit's 413,
// an auth proxy's 401) and then hold the connection open without reading
// the rest: the write blocks once the kernel buffers are full, and the
// answer would sit in the receive queue until the request's context ends
// (the gateway's first_byte timeout). net/http's transport reads every
// response on a goroutine of its own; here one is started only for a
// body whose write has run this long, so the usual exchange, a body the
// kernel takes at once, stays on the caller's goroutine.
const readAlongAfter = 50 * time.Millisecond

// readAlongAtOnce (tests): the response is read alongside from the
// body's first write.
const readAlongAtOnce = -time.Nanosecond

// errWriteStopped is the write of a body stopped because the response
// ended it: a final answer (or a broken one) came before the body was
// all written. The request did not leave whole; its connection is not
// reused.
var errWriteStopped = errors.New("h1client: the body's write was stopped by the response")

// ErrSendStalled is a body's write that the backend took nothing of
// for Options.SendIdleTimeout once the response was read alongside: the
// backend holds the exchange without reading the request (it may have
// sent a 2xx head, which does not stop the write). The request did not
// leave whole; its connection is reset.
var ErrSendStalled = errors.New("h1client: the backend took none of the request body within the send idle timeout")

// aLongTimeAgo is a deadline that has passed: it ends a blocked write.
var aLongTimeAgo = time.Unix(1, 0)

// headRead is the response head read alongside a body's write.
type headRead struct {
	h     head
	err   error
	begun bool // a byte of the response arrived
}

// bodyWriter writes the part of a request that did not fit its message,
// and starts the response's read alongside when the write runs past
// readAlongAfter. The connection carries one, reset per request (no
// allocation per body).
type bodyWriter struct {
	cn *conn
	// along, once the read alongside has started, gets its head; the
	// exchange takes it before it returns, so the goroutine never
	// outlives the exchange. nil: the write ran alone.
	along chan headRead
	// stopped: the read alongside has stopped the write (its deadline
	// passed). The write sets deadlines of its own from then on (the send
	// bound), so a deadline that passes is told apart by this, and one it
	// sets after the read's is undone by it (arm).
	stopped atomic.Bool
}

// Write writes p whole. A write deadline that passes starts the read
// alongside the first time; afterwards it means that read stopped the
// write, or that the backend took nothing of p within the send bound.
func (w *bodyWriter) Write(p []byte) (int, error) {
	// taken is when the backend last took some of the body, as far as the
	// write knows: the send bound counts from it (a new piece starts it
	// afresh, the gateway having waited on its client meanwhile).
	var taken time.Time
	if w.along != nil {
		if taken = time.Now(); w.arm(taken) {
			return 0, errWriteStopped
		}
	}
	n := 0
	for {
		m, err := w.cn.nc.Write(p[n:])
		n += m
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if w.along == nil {
			w.readAlong()
			taken = time.Now()
			continue
		}
		if w.stopped.Load() || w.cn.c.opt.SendIdleTimeout <= 0 {
			return n, errWriteStopped
		}
		// A backend that took some of p since the last deadline is slow,
		// not stalled: the bound counts from then on (nginx's
		// proxy_send_timeout, between two writes that took something).
		// It counted from the piece's start: a backend taking less than
		// 32 KiB within it (under ~550 bytes a second at the gateway's
		// 60 s) was cut while it read all along.
		now := time.Now()
		if m > 0 {
			taken = now
		}
		if !resumable(w.cn.nc) || now.Sub(taken) >= w.cn.c.opt.SendIdleTimeout {
			return n, ErrSendStalled
		}
		if w.arm(taken) {
			return n, errWriteStopped
		}
	}
}

// sendChecks is how many times within the send bound a write the backend
// is slow to take looks at whether it took something: a stall is found
// between the bound and a sendChecks-th more after the last byte taken
// (the write's count tells that some went in a check's span, not when).
const sendChecks = 4

// arm sets the send bound's deadline, counted from taken, once the read
// alongside has started (without a bound, only the read sets one): on a
// plain socket the next check (sendChecks), on a connection whose write
// cannot go on past a deadline (TLS) the bound's end. It reports whether
// the read has stopped the write: the deadline set here may have replaced
// the read's passed one, and the write must not go on. (The read sets
// stopped before its deadline: a read that stops the write after the
// check below sets its deadline after ours.)
func (w *bodyWriter) arm(taken time.Time) bool {
	if idle := w.cn.c.opt.SendIdleTimeout; idle > 0 {
		due := taken.Add(idle)
		if next := time.Now().Add(idle / sendChecks); resumable(w.cn.nc) && next.Before(due) {
			due = next
		}
		w.cn.nc.SetWriteDeadline(due)
	}
	return w.stopped.Load()
}

// readAlong reads the response head on a goroutine of its own while the
// caller writes: once it ends with an error answer (a final head of 300
// or more) or a failure, it stops the write that has not ended yet,
// through a write deadline already passed; a 2xx head waits for the write.
// Socket deadlines are the real clock's: they are not Options.Now's.
func (w *bodyWriter) readAlong() {
	cn := w.cn
	// From here only the read, or the send bound, ends the write.
	if idle := cn.c.opt.SendIdleTimeout; idle > 0 {
		cn.nc.SetWriteDeadline(time.Now().Add(idle))
	} else {
		cn.nc.SetWriteDeadline(time.Time{})
	}
	w.stopped.Store(false)
	along := make(chan headRead, 1)
	w.along = along
	go func() {
		var r headRead
		if r.err = cn.br.waitByte(); r.err == nil {
			r.begun = true
			r.h, r.err = readFinalHead(&cn.br, &cn.scratch)
		}
		if r.err != nil || r.h.code >= 300 {
			// An error answer says the body is not wanted (RFC 9112 9.6:
			// the client stops sending it); a 2xx does not (a full-duplex
			// backend streams its answer while it reads, and waits for the
			// rest): the write goes on to its end, as curl's and net/http's.
			w.stopped.Store(true)
			cn.nc.SetWriteDeadline(aLongTimeAgo)
		}
		along <- r
	}()
}

// writeRest streams a body that did not fit in the message. after is
// when the response is read alongside (Client.readAlongAfter).
func (w *bodyWriter) writeRest(out encoded, after time.Duration) error {
	nc := w.cn.nc
	if !resumable(nc) {
		// A write a deadline interrupted cannot go on (crypto/tls makes
		// its error permanent): the read alongside starts with the write.
		w.readAlong()
	} else if nc.SetWriteDeadline(time.Now().Add(after)) != nil {
		nc.SetWriteDeadline(time.Time{}) // no deadlines: the write runs alone
	}
	err := w.copyRest(out)
	if w.along == nil {
		nc.SetWriteDeadline(time.Time{})
	}
	return err
}

// resumable: a write to nc that a deadline interrupted may be resumed
// where it stopped, the count of bytes written being exact (a plain
// socket). A wrapper (a Dial of one's own: TLS, a counting conn) may not
// say so: a tls.Conn's timed-out write leaves its record stream corrupt.
func resumable(nc net.Conn) bool {
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

func (w *bodyWriter) copyRest(out encoded) error {
	if out.length >= 0 {
		n, err := io.Copy(w, io.LimitReader(out.rest, out.length))
		if err == nil && n != out.length {
			err = errBodyLength
		}
		return err
	}
	buf := make([]byte, 32<<10)
	for {
		m, rerr := out.rest.Read(buf[10 : len(buf)-2])
		if m > 0 {
			frame := strconv.AppendInt(buf[:0], int64(m), 16)
			frame = append(frame, "\r\n"...)
			start := 10 - len(frame)
			copy(buf[start:], frame)
			end := 10 + m
			buf[end], buf[end+1] = '\r', '\n'
			if _, err := w.Write(buf[start : end+2]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			_, err := w.Write([]byte("0\r\n\r\n"))
			return err
		}
		if rerr != nil {
			return rerr
		}
	}
}

// joinRead takes the head read alongside, after the write has ended with
// err. A body that failed at its source leaves the server waiting for the
// rest, and a stalled send (ErrSendStalled) a server that reads nothing:
// the connection is closed to end the read (the exchange fails with
// the write's error). A write the connection failed ends the read on its
// own (what the server sent first, then the error), as does the read
// that stopped the write. After a whole write, the read may have passed
// the write deadline that stops it: cleared for the connection's reuse.
func (w *bodyWriter) joinRead(err error) headRead {
	if err != nil && err != errWriteStopped && !connWriteFailed(err) {
		w.cn.close()
	}
	r := <-w.along
	w.along = nil
	if err == nil {
		w.cn.nc.SetWriteDeadline(time.Time{})
	}
	return r
}
