package gateway

import (
	"errors"
	"net/http"
	"os"
	"time"
)

// sendWriter cuts a client that accepts no response bytes for timeout
// (nginx send_timeout): each write first moves the connection's write
// deadline, so a write blocked on a client that stopped reading fails after
// timeout, the connection's context is cancelled and the upstream call (or
// the client's place in a coalescing flight) is released. The deadline is
// wall-clock time because the network poller's is; it covers only the
// gateway's own writes, never the wait for a backend.
type sendWriter struct {
	http.ResponseWriter
	conn    deadliner // nil: the writer has no connection (a job's); nothing to bound
	timeout time.Duration
	cuts    counter // clients cut for the send timeout
	cut     bool
	aborted bool
	// status is the answer's status once its head is written (0 before):
	// what the access line of a route outside the chain reports (logRoute).
	status int
	// sent is the response body bytes written to the client so far
	// (nginx's $body_bytes_sent), for the access line. Only the handler's
	// goroutine, or a read-ahead drain the handler waits for before
	// reading it (record), writes it.
	sent  int64
	armed time.Time // when the deadline was last moved (see arm)
	// fresh: armAt just moved the deadline for the write that follows,
	// which then reads no clock of its own.
	fresh bool
}

// rearmAfter is how stale the write deadline may be before a write moves
// it again: a header and body written together (a cache hit), or a burst
// of stream chunks, set it once instead of per call. Setting a deadline
// costs a runtime timer update; a deadline up to 1ms early on a send
// timeout of seconds changes nothing a client can notice.
const rearmAfter = time.Millisecond

// deadliner is what net/http's response writers offer (and
// http.ResponseController uses); asserted directly, it costs no
// allocation per write.
type deadliner interface {
	SetWriteDeadline(time.Time) error
	FlushError() error
}

// counter is the metric sendWriter counts cuts on.
type counter interface{ Inc() }

// init sets up a zero sendWriter in place (guard's, inside its request's
// one allocation): a sendWriter built aside and copied in cost a hit ~30
// instructions and 3 code lines more (docs/BENCHMARKS.md §9 Step 5,
// branch hitpath).
func (sw *sendWriter) init(w http.ResponseWriter, timeout time.Duration, cuts counter) {
	sw.ResponseWriter, sw.timeout, sw.cuts = w, timeout, cuts
	sw.conn, _ = w.(deadliner)
}

// bytesSent is the response body bytes written so far (bytesCounter).
func (w *sendWriter) bytesSent() int64 { return w.sent }

// bytesCounter is an answer's sink that counts the body bytes it took:
// the client's sendWriter, or a job's answerSink. The access line's
// bytes_sent.
type bytesCounter interface{ bytesSent() int64 }

// Unwrap lets http.ResponseController reach the connection.
func (w *sendWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *sendWriter) arm() {
	if w.conn != nil && !w.aborted && w.timeout > 0 {
		if w.fresh {
			w.fresh = false
			return
		}
		now := time.Now()
		// armed is zero at a request's first write: Sub against a time
		// without a monotonic reading takes the wall-clock path (an Add
		// and an Equal more), so it is asked only once one was set.
		if !w.armed.IsZero() && now.Sub(w.armed) < rearmAfter {
			return
		}
		w.armed = now
		w.conn.SetWriteDeadline(now.Add(w.timeout))
	}
}

// armAt moves the deadline from t, a wall-clock reading taken within the
// request's own CPU time of the write that follows (the arrival's, for an
// answer the chain writes before admission: stampDate), so that write
// reads no clock of its own; it is as early as the time since t, where
// arm allows rearmAfter. Only before the first write: after it, arm moves
// the deadline.
func (w *sendWriter) armAt(t time.Time) {
	if w.conn != nil && !w.aborted && w.timeout > 0 && w.armed.IsZero() {
		w.armed, w.fresh = t, true
		w.conn.SetWriteDeadline(t.Add(w.timeout))
	}
}

func (w *sendWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.arm()
	w.ResponseWriter.WriteHeader(code)
}

// maxArmedWrite is the most of one Write that leaves under one deadline:
// a larger one (a cache hit or a flight's answer, up to cache.max_entry,
// written at once) is written in pieces, each under a deadline of its own
// (arm: moved when the one before took over rearmAfter), so
// server.send_timeout bounds a stall between two pieces, as nginx's
// send_timeout bounds the time between two successive write operations,
// and not the time the whole write takes. The kernel takes at most
// netguard.MaxUnsent ahead of a client, so without pieces a 1 MiB hit had
// to reach a client within send_timeout (one slower than ~15 KB/s was
// cut).
const maxArmedWrite = 256 << 10

func (w *sendWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if len(p) > maxArmedWrite && w.conn != nil {
		return w.writePieces(p)
	}
	w.arm()
	n, err := w.ResponseWriter.Write(p)
	w.sent += int64(n)
	w.note(err)
	return n, err
}

// writePieces is Write for a p over maxArmedWrite.
func (w *sendWriter) writePieces(p []byte) (int, error) {
	var sent int
	for len(p) > 0 {
		q := p[:min(len(p), maxArmedWrite)]
		w.arm()
		n, err := w.ResponseWriter.Write(q)
		w.sent += int64(n)
		sent += n
		if err != nil {
			w.note(err)
			return sent, err
		}
		p = p[n:]
	}
	return sent, nil
}

func (w *sendWriter) Flush() {
	w.arm()
	if w.conn != nil {
		w.note(w.conn.FlushError())
	} else if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *sendWriter) note(err error) {
	if err != nil && !w.cut && !w.aborted && errors.Is(err, os.ErrDeadlineExceeded) {
		w.cut = true
		if w.cuts != nil {
			w.cuts.Inc()
		}
	}
}

// abort ends a response that cannot be finished: the connection is closed
// before the body's end, so the client sees a truncated answer rather than
// a short one that looks whole.
func (w *sendWriter) abort() {
	w.aborted = true
	if w.conn != nil {
		w.conn.SetWriteDeadline(time.Unix(1, 0))
		w.conn.FlushError()
	}
}

// abortResponse aborts w's response (see sendWriter.abort).
func abortResponse(w http.ResponseWriter) {
	for u := w; u != nil; {
		if sw, ok := u.(*sendWriter); ok {
			sw.abort()
			return
		}
		uw, ok := u.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		u = uw.Unwrap()
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Unix(1, 0))
	rc.Flush()
}
