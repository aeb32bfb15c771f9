package netguard

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// Refusal bounds the second tier that answers connections over the caps,
// as nginx's limit_conn does: it reads the request head and answers 503
// with Retry-After and "Connection: close", then closes lingering, so the
// client learns it was refused (and when to retry) instead of seeing a
// bare close. Each connection in the tier costs a goroutine (a few KiB of
// stack) and a refusalBuf buffer; Max bounds them. Past Max, connections
// are closed at accept, and counted.
//
// Under a flood the head wait shrinks: when more than half the tier is
// waiting for heads, each newcomer cuts the oldest wait short and that
// connection is answered at once (as Envoy's overload manager shortens
// timeouts under pressure), so the tier answers as fast as connections
// arrive rather than Max per HeadTimeout.
type Refusal struct {
	// Max is the number of over-cap connections being answered at once;
	// 0 turns the tier off: every over-cap connection is closed at accept.
	Max int
	// HeadTimeout is the longest wait for the request head. When it runs
	// out the 503 is sent anyway: it does not depend on the request.
	HeadTimeout time.Duration
	// HeadBytes is the most bytes read while looking for the head's end.
	HeadBytes int
	// Linger bounds the lingering close after the 503: the listener's
	// own, cut to the tier's ceilings (Linger.ForRefusal).
	Linger Linger
}

// DefaultRefusal is the tier's default: 1,024 connections at once (with
// their goroutines, about 8 MiB), each given 1 s for its head (a client's
// head follows its handshake within a round trip) and 4 KiB of it; after
// the 503 a drain of at most 5 s, 1 s without data or 64 MiB
// (DefaultLinger().ForRefusal()).
func DefaultRefusal() Refusal {
	return Refusal{Max: 1024, HeadTimeout: time.Second, HeadBytes: 4 << 10, Linger: DefaultLinger().ForRefusal()}
}

// The refusal tier's lingering close is never longer than these
// (Linger.ForRefusal).
const (
	refusalLingerTime    = 5 * time.Second
	refusalLingerTimeout = time.Second
	refusalLingerBytes   = 64 << 20
)

// ForRefusal is the refusal tier's lingering close after its 503, given
// lim, the listener's: each bound is lim's, or the tier's ceiling (5 s
// whole, 1 s without data, 64 MiB) when lim's is longer, so configuring
// a shorter linger (server.linger) shortens the tier's too, and a longer
// one leaves the tier's as it was. The tier's is shorter because its
// slots are few (server.refusal_connections) and meant for a flood: a
// refused connection lingering holds one, and with the tier full the
// next over-cap connection is closed at accept, unanswered (tier_full).
// Its client has only its head, and perhaps a body, in flight when the
// 503 goes out; it has the 503 one round trip later, so a second of quiet
// is enough to spare it the reset. A zero lim (no lingering) stays zero.
func (lim Linger) ForRefusal() Linger {
	return Linger{Time: min(lim.Time, refusalLingerTime), Timeout: min(lim.Timeout, refusalLingerTimeout),
		Bytes: min(lim.Bytes, refusalLingerBytes)}
}

// refusalBuf is the tier's read buffer per connection: the head is
// scanned, never kept, so it needs no more; a drain reads through it too.
const refusalBuf = 1 << 10

// How a connection in the refusal tier ended
// (sluice_connection_refusals_total{outcome}).
const (
	RefusalHead      = "head"       // the head arrived whole: answered 503
	RefusalTimeout   = "timeout"    // no whole head within HeadTimeout: answered 503
	RefusalHurried   = "hurried"    // its wait was cut short by newcomers: answered 503
	RefusalHeadBytes = "head_bytes" // the head was longer than HeadBytes: answered 503
	RefusalClosed    = "closed"     // the client closed before the answer
	RefusalError     = "error"      // a reset, a failed write, or a shutdown
	RefusalHandshake = "handshake"  // its TLS handshake did not finish: no 503 (plain HTTP got the 400 tls_required)
	RefusalTierFull  = "tier_full"  // the tier was full: closed at accept, unanswered
	RefusalLiveness  = "liveness"   // a liveness probe (GET or HEAD /healthz): answered 200, as the gateway would
)

// livenessAnswer is the tier's answer to GET or HEAD /healthz: the
// gateway's own (200 "ok"). A connection cap reached is load, not a dead
// process: answering the kubelet's liveness probe 503 there had it
// restart a gateway that was only full, cutting every stream it held.
// Readiness (/readyz) still gets the 503: a gateway at its cap takes no
// new connection, which is what readiness tells a load balancer.
var livenessAnswer = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 3\r\n\r\nok\n")

// isLiveness reports whether p, the first bytes read from a connection,
// start a request line for GET or HEAD /healthz (a query allowed, as the
// gateway's route ignores it). A request line split across reads is not
// recognised and gets the 503: the kubelet writes its head in one piece.
func isLiveness(p []byte) bool {
	for _, m := range []string{"GET /healthz", "HEAD /healthz"} {
		if len(p) > len(m) && string(p[:len(m)]) == m && (p[len(m)] == ' ' || p[len(m)] == '?') {
			return true
		}
	}
	return false
}

// refusalAnswers are the 503s, one per cap, made once: per connection the
// tier only puts a Date and a new request id between their two parts
// (appendIdentity), in the connection's pooled buffer, allocating nothing.
var refusalAnswers = map[string]refusalAnswer{
	RefusedMaxConnections: newRefusalAnswer("the gateway holds as many client connections as it is allowed (server.max_connections); retry shortly"),
	RefusedMaxPerIP:       newRefusalAnswer("your address holds as many connections as one client is allowed (server.max_connections_per_ip); reuse one or retry shortly"),
}

// adminRefusal is the admin listener's 503 (ConnLimits.Admin): its one
// cap is admin.max_connections, and an operator who reads
// server.max_connections there raises the wrong setting.
var adminRefusal = newRefusalAnswer("the admin listener holds as many connections as it is allowed (admin.max_connections); retry shortly")

// refusalAnswerFor is the 503 for a connection over cap reason.
func refusalAnswerFor(limits ConnLimits, reason string) refusalAnswer {
	if limits.Admin {
		return adminRefusal
	}
	return refusalAnswers[reason]
}

// refusalAnswer is a 503's head up to its Date, and the rest; e is what
// it says, for its log line.
type refusalAnswer struct {
	head, rest []byte
	e          *openai.Error
}

func newRefusalAnswer(msg string) refusalAnswer {
	e := &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "too_many_connections", Message: msg}
	body := e.JSON()
	return refusalAnswer{
		head: []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nretry-after-ms: 1000\r\nConnection: close\r\n"),
		rest: fmt.Appendf(nil, "Content-Length: %d\r\n\r\n%s", len(body), body),
		e:    e,
	}
}

// appendTo appends the whole answer, dated now, with a new request id,
// and returns the id's bytes within it.
func (a refusalAnswer) appendTo(b []byte, now time.Time) (answer, id []byte) {
	b = append(b, a.head...)
	b, at := appendIdentity(b, now)
	b = append(b, a.rest...)
	return b, b[at : at+openai.RequestIDLen]
}

// refusalTier is the listener's state for the tier, guarded by its mutex.
type refusalTier struct {
	// conns: every connection in the tier, with its place in waiting
	// while it waits for its head (nil after).
	conns   map[net.Conn]*list.Element
	waiting list.List // of *overCapConn, oldest first
	wg      sync.WaitGroup
	bufs    sync.Pool // *[refusalBuf]byte
}

func newRefusalTier() refusalTier {
	return refusalTier{conns: make(map[net.Conn]*list.Element),
		bufs: sync.Pool{New: func() any { return new([refusalBuf]byte) }}}
}

// overCapConn is one connection in the tier.
type overCapConn struct {
	c       net.Conn
	answer  refusalAnswer // the 503 for the cap it is over
	rf      Refusal
	hurried bool // its head wait was cut short (under the listener's lock)
}

// enterTier takes a slot in the refusal tier for c, or reports that there
// is none (the tier is off or full, or the listener closed).
func (l *Listener) enterTier(c net.Conn, reason string) (*overCapConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rf := l.limits.Refusal
	t := &l.tier
	if l.closed || rf.Max <= 0 || len(t.conns) >= rf.Max {
		return nil, false
	}
	// The head deadline is set here, under the lock, so that neither a
	// hurry nor Close can be overwritten by it.
	if c.SetReadDeadline(time.Now().Add(rf.HeadTimeout)) != nil {
		return nil, false
	}
	r := &overCapConn{c: c, answer: refusalAnswerFor(l.limits, reason), rf: rf}
	t.conns[c] = t.waiting.PushBack(r)
	if t.waiting.Len() > rf.Max/2 {
		oldest := t.waiting.Front()
		o := oldest.Value.(*overCapConn)
		o.hurried = true
		o.c.SetReadDeadline(time.Unix(1, 0))
		t.waiting.Remove(oldest)
		t.conns[o.c] = nil
	}
	// Under the lock, like every Add: Close waits only once closed is set,
	// so no Add can race its Wait.
	t.wg.Add(1)
	l.m.refusingDelta(1)
	return r, true
}

// refuse answers r in the tier: the listener owns this goroutine, and
// Close cuts it short.
func (l *Listener) refuse(r *overCapConn) {
	buf := l.tier.bufs.Get().(*[refusalBuf]byte)
	outcome := l.answerRefusal(r, buf[:])
	l.m.refusalEnded(outcome) // before the close, which the client sees
	r.c.Close()
	l.tier.bufs.Put(buf)
	l.mu.Lock()
	delete(l.tier.conns, r.c)
	l.mu.Unlock()
	l.m.refusingDelta(-1)
	l.tier.wg.Done()
}

func (l *Listener) answerRefusal(r *overCapConn, buf []byte) string {
	outcome, live := readHead(r.c, buf, r.rf.HeadBytes)
	l.mu.Lock()
	if el := l.tier.conns[r.c]; el != nil {
		l.tier.waiting.Remove(el)
		l.tier.conns[r.c] = nil
	}
	if outcome == RefusalTimeout && r.hurried {
		outcome = RefusalHurried
	}
	l.mu.Unlock()
	if outcome == RefusalClosed {
		return outcome
	}
	// A TLS client whose handshake did not finish (late, hurried, or
	// not TLS at all) cannot read a 503: it is neither answered nor
	// logged as if it were, and its count tells a handshake flood from
	// resets.
	if hs, ok := r.c.(handshaker); ok && !hs.HandshakeComplete() {
		return RefusalHandshake
	}
	if outcome == RefusalError {
		return outcome
	}
	now := time.Now()
	if !l.unlessClosed(func() error { return r.c.SetWriteDeadline(now.Add(r.rf.HeadTimeout)) }) {
		return RefusalError
	}
	// The head was scanned, not kept: buf is free for the answer.
	if live && outcome == RefusalHead {
		if _, err := r.c.Write(livenessAnswer); err != nil {
			return RefusalError
		}
		outcome = RefusalLiveness
	} else {
		a := r.answer
		answer, id := a.appendTo(buf[:0], now)
		l.logRefusal(a.e, id, r.c.RemoteAddr())
		if _, err := r.c.Write(answer); err != nil {
			return RefusalError
		}
	}
	// The answer is out; what the client still sends (the rest of its
	// head, a body) is read and dropped so that it reads the 503 rather
	// than a reset.
	if cw, ok := r.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if r.rf.Linger.Time > 0 && r.rf.Linger.Timeout > 0 {
		l.m.refusalLingerEnded(l.drain(r.c, r.rf.Linger, buf, waited{}))
	}
	return outcome
}

// handshaker is a transport connection with a handshake of its own
// (internal/tlsterm's), which the tier answers through only once it is
// complete.
type handshaker interface{ HandshakeComplete() bool }

// readHead reads from c through buf until the end of a request head,
// limit bytes, or the read deadline, and says which came first, and
// whether the first read began a liveness probe (isLiveness).
func readHead(c net.Conn, buf []byte, limit int) (outcome string, live bool) {
	var head headScanner
	for read := 0; read < limit; {
		n, err := c.Read(buf[:min(len(buf), limit-read)])
		if read == 0 && n > 0 {
			live = isLiveness(buf[:n])
		}
		if head.ends(buf[:n]) {
			return RefusalHead, live
		}
		read += n
		switch {
		case err == nil:
		case isTimeout(err):
			return RefusalTimeout, live
		case errors.Is(err, io.EOF):
			return RefusalClosed, live
		default:
			return RefusalError, live
		}
	}
	return RefusalHeadBytes, live
}

// headScanner finds the end of a request head, an empty line (CRLF or a
// bare LF, as net/http accepts), in pieces as they arrive: the head is
// scanned, never kept.
type headScanner struct {
	atLineStart bool // after a line's LF, with at most CRs since
}

// ends reports whether the head ends within p.
func (h *headScanner) ends(p []byte) bool {
	for _, b := range p {
		switch b {
		case '\n':
			if h.atLineStart {
				return true
			}
			h.atLineStart = true
		case '\r':
		default:
			h.atLineStart = false
		}
	}
	return false
}

// unlessClosed sets a deadline (set) unless the listener is closed, and
// reports whether it did; under the lock, so the deadline Close sets to
// cut a connection short is never overwritten.
func (l *Listener) unlessClosed(set func() error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed && set() == nil
}
