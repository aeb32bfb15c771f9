package netguard

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/framing"
	"github.com/sluice-gw/sluice/internal/openai"
)

// ConnLimits cap client connections held at once.
type ConnLimits struct {
	Total int // every client; at least 1
	PerIP int // one client address; 0 = no per-address cap
	// Linger bounds the lingering close of a connection answered while
	// its client was still sending; the zero value closes at once.
	Linger Linger
	// Refusal bounds the tier that answers connections over Total or
	// PerIP with a 503 (refusal.go); the zero value closes them at accept.
	Refusal Refusal
	// Admin: these are the admin listener's caps, so its 503 names
	// admin.max_connections; false: the public listener's (server.*).
	Admin bool
}

// The caps a connection can be over (sluice_connections_refused_total).
const (
	RefusedMaxConnections = "max_connections"
	RefusedMaxPerIP       = "max_connections_per_ip"
)

// Listener hands the server only connections within its limits; the slot
// of an admitted connection is freed when the server closes it. It
// answers the others itself with a 503 in a small bounded tier (nginx
// limit_conn, refusal.go) and closes them at accept once that tier is
// full too (Envoy's listener connection limit), counting each. The key of
// the per-address cap is the client's IPv4 address or IPv6 /64, without
// the port (nginx limit_conn on $binary_remote_addr, by /64 for IPv6:
// ClientKey). Safe for concurrent use.
type Listener struct {
	net.Listener
	m *ConnMetrics

	mu     sync.Mutex
	limits ConnLimits
	open   int
	perIP  map[string]int
	closed bool
	// lingering: connections draining before their close (linger.go).
	lingering map[*conn]struct{}
	// discarding: connections reading a refused body's rest after the
	// answer (TimedBody.answerThenDiscard), for Close to cut.
	discarding map[*conn]struct{}
	discard    sync.Pool   // *[]byte read buffers for draining
	tier       refusalTier // over-cap connections being answered (refusal.go)
	// scan: each admitted connection follows the request framing of what
	// it reads (ScanFraming).
	scan bool
	// transport, when set (WrapTransport), wraps each accepted connection
	// beneath the listener's own: TLS.
	transport func(net.Conn) net.Conn
	// start is when the listener was made: a read deadline before it has
	// passed (readDeadline.past), in nanos. Socket deadlines are wall-clock
	// times.
	start int64
	// log, when set (LogRefusals), takes a line per answer the listener
	// makes itself, within its budget.
	log atomic.Pointer[refusalLog]
}

// refusalLog is where the listener's own answers are logged, and the
// budget their lines draw on (LogRefusals).
type refusalLog struct {
	log   *slog.Logger
	allow func() bool // nil: every line
}

// NewListener wraps ln; m may be nil.
func NewListener(ln net.Listener, limits ConnLimits, m *ConnMetrics) *Listener {
	l := &Listener{Listener: ln, limits: limits, perIP: make(map[string]int), m: m,
		lingering: make(map[*conn]struct{}), discarding: make(map[*conn]struct{}), tier: newRefusalTier(), start: nanos(time.Now())}
	l.discard.New = func() any { b := make([]byte, 16<<10); return &b }
	return l
}

// ScanFraming has every connection the listener admits follow the
// HTTP/1.1 request framing of the bytes it reads (internal/framing's
// Scanner, fed from the connection's own Read: no second wrapper, no
// second lock), so that Guard can refuse a request whose body length is
// ambiguous and tell a handler whether its body is in (BodyReceived).
// Connections the listener refuses or answers itself are never scanned.
// Call it before the first Accept.
func (l *Listener) ScanFraming() { l.scan = true }

// LogRefusals has every answer the listener makes itself (net/http's
// refusals as rewritten here, the late head's 408, the refusal tier's
// 503s) logged on log, one line each with the answer's request id, as the
// access log has a line per request of the pipeline; nil stops it. allow,
// when not nil, is asked before each line is written and may hold it back:
// the lines cost a client nothing but a connection, so a flood of them
// (connections over the cap) would write the log as fast as they arrive;
// the gateway bounds them with its own refusals' access lines
// (log.access_refused_per_second: Gateway.RefusalLineAllowed), counting
// those held back. Safe while serving: a reload turns log.access on or off.
func (l *Listener) LogRefusals(log *slog.Logger, allow func() bool) {
	if log == nil {
		l.log.Store(nil)
		return
	}
	l.log.Store(&refusalLog{log: log, allow: allow})
}

// logRefusal logs the answer e, with request id id, to the client at addr
// (LogRefusals): at Warn when the gateway refused for its own state (the
// tier's 503), else Info: a 501 or 505 is the client's doing, not the
// gateway's trouble, though its status is a 5xx.
// Called before the answer is written, so a client that has it finds its
// line.
func (l *Listener) logRefusal(e *openai.Error, id []byte, addr net.Addr) {
	rl := l.log.Load()
	level := slog.LevelInfo
	if e.Type == openai.TypeServer {
		level = slog.LevelWarn
	}
	if rl == nil || !rl.log.Enabled(context.Background(), level) || rl.allow != nil && !rl.allow() {
		return
	}
	log := rl.log
	client := ""
	if addr != nil {
		client = addr.String()
	}
	log.LogAttrs(context.Background(), level, "request refused by the listener", slog.String("request_id", string(id)),
		slog.Int("status", e.Status), slog.String("error", e.Code), slog.String("client", client))
}

// SetLimits changes the caps (config reload); connections already open
// are never cut, new ones see the new caps.
func (l *Listener) SetLimits(limits ConnLimits) {
	l.mu.Lock()
	l.limits = limits
	l.mu.Unlock()
}

// Open is the number of admitted connections not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next connection within the limits, handing the
// others to the refusal tier (or closing them) as they come.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		if reason := l.admit(ip); reason != "" {
			l.m.refused(reason)
			tc := c
			if l.transport != nil {
				tc = l.transport(c) // the tier sets the socket's deadlines itself
			}
			if r, ok := l.enterTier(tc, reason); ok {
				go l.refuse(r)
			} else {
				// Counted before the close: a client that sees the close
				// can read the count (the tier's test does).
				l.m.refusalEnded(RefusalTierFull)
				c.Close()
			}
			continue
		}
		boundUnsent(c)
		gc := &conn{Conn: c, raw: c, l: l, ip: ip, scan: l.scan}
		gc.rd.past = l.start
		if l.scan {
			gc.fr = framing.NewScanner(MaxHeaderFields)
		}
		if l.transport != nil {
			gc.Conn = l.transport(&transportSocket{Conn: c, gc: gc})
		}
		return gc, nil
	}
}

func (l *Listener) admit(ip string) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.limits.Total:
		return RefusedMaxConnections
	case l.limits.PerIP > 0 && ip != "" && l.perIP[ip] >= l.limits.PerIP:
		return RefusedMaxPerIP
	}
	l.open++
	l.m.opened(1)
	if ip != "" {
		l.perIP[ip]++
	}
	return ""
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	l.m.opened(-1)
	if ip == "" {
		return
	}
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip) // the map holds only addresses with open connections
	}
}

// hostOf is the key of a connection's per-address cap (ClientKey): its
// IPv4 address, or its IPv6 /64.
func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return keyOf(t.AddrPort().Addr())
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return "" // not an IP transport (unix socket): no per-address cap
	}
	return ClientKey(host)
}

// conn is the one connection layer of an admitted connection: it frees
// its slot once, whoever closes it first, tells which server timeout cut
// it (see ConnState), holds its deadlines (deadline.go), and follows the
// request framing of what it reads (ScanFraming, Guard).
type conn struct {
	// Conn is what reads and writes go to: the transport's connection
	// (WrapTransport), else the accepted one.
	net.Conn
	// raw is the accepted connection itself: deadlines are set on it, and
	// a lingering close drains it past the transport, which is done with
	// the connection.
	raw   net.Conn
	l     *Listener
	ip    string
	once  sync.Once
	phase atomic.Int32 // phaseHeader, phaseIdle or phaseActive
	// timedOut: a timeout was counted. net/http may read again after a
	// timeout (textproto peeks, then reads) before it closes.
	timedOut atomic.Bool
	// linger: the server answered while the client may still be sending;
	// Close drains first (linger.go). draining: one Close does it.
	linger, draining atomic.Bool
	// ended: the connection serves no further request; its reads fail
	// (endAfterAnswer).
	ended atomic.Bool
	// memo is the connection's ConnMemo.
	memo atomic.Value
	// spare is Arrival.Spare: written and read only by the goroutine
	// serving the connection's HTTP/1.x requests, one after another.
	spare any
	// rd is the read deadline, handed to the socket when a read needs it;
	// wd the write deadline, left on the socket while it is earlier.
	rd readDeadline
	wd writeDeadline
	// received counts the bytes read until the receive buffer is fixed
	// (rcvFixed, boundReceive): touched by the one reader at a time, as rd.
	received int
	rcvFixed bool
	// scan: fr follows the request framing (ScanFraming). fr is fed by
	// Read and asked by Guard, BodyReceived and the 431's rewrite, all
	// under rd.mu, which Read takes after every read anyway.
	scan bool
	fr   framing.Scanner
	// waited: what a discard of a refused body's rest waited before the
	// connection was hijacked to close (closeAfterAnswer); written before
	// the goroutine that closes it starts, read by that close (linger).
	waited waited
}

// What the server is waiting for on a connection, which names the
// timeout when a read times out.
const (
	phaseHeader int32 = iota // a request's header (read_header_timeout)
	phaseIdle                // the next request on a keep-alive connection (idle_timeout)
	phaseActive              // a handler runs; its body timeouts count themselves
)

// NetConn is the connection under the listener's own (the transport's,
// if any), for that layer's hooks to find theirs.
func (c *conn) NetConn() net.Conn { return c.Conn }

// ConnState is the http.Server's ConnState hook: it lets the listener
// count idle and header timeouts, which net/http enforces silently. It is
// the function ConnState, as a method value.
func (l *Listener) ConnState(c net.Conn, s http.ConnState) { ConnState(c, s) }

// ConnState is the http.Server's ConnState hook for any Listener's
// connections (Listener.ConnState). net/http calls it twice per request;
// given as this function, not a method value, it is called without the
// method value's wrapper frame.
func ConnState(c net.Conn, s http.ConnState) {
	// Ours is the server's connection; another wrapper may sit on top of
	// it elsewhere (unwrap).
	gc, ok := c.(*conn)
	if !ok {
		if gc = unwrap(c); gc == nil {
			return
		}
	}
	switch s {
	case http.StateIdle:
		gc.phase.Store(phaseIdle)
	case http.StateActive:
		gc.phase.Store(phaseActive)
	}
}

// SetReadDeadline sets the deadline of the reads from now on, handed to
// the socket when one starts (readDeadline), or now if a read is waiting
// and must not wait past it. net/http calls it about six times per
// request, so readDeadline's part is written out here, not called.
func (c *conn) SetReadDeadline(t time.Time) error {
	n, d := nanos(t), &c.rd
	d.mu.Lock()
	d.pending = n
	if d.reading > 0 && d.mustApply() {
		err := d.applyLocked(c.raw)
		d.mu.Unlock()
		return err
	}
	d.mu.Unlock() // not deferred, as above
	return nil
}

// SetWriteDeadline sets the deadline of the writes from now on; the
// socket's is moved now only when the one set is earlier than the
// socket's, or the socket has none (writeDeadline).
func (c *conn) SetWriteDeadline(t time.Time) error {
	n, d := nanos(t), &c.wd
	d.mu.Lock()
	d.pending = n
	if n != 0 && (d.applied == 0 || n < d.applied) {
		err := d.applyLocked(c.raw)
		d.mu.Unlock()
		return err
	}
	d.mu.Unlock() // not deferred: this runs twice per request
	return nil
}

// SetDeadline sets both deadlines on the socket at once.
func (c *conn) SetDeadline(t time.Time) error {
	c.wd.mu.Lock()
	defer c.wd.mu.Unlock()
	if err := c.rd.setBoth(t, c.raw); err != nil {
		return err
	}
	n := nanos(t)
	c.wd.pending, c.wd.applied = n, n
	return nil
}

// Read hands the deadline last set to the socket first if the socket's may
// not stand for it (readDeadline.mustApply), and fails at once, leaving the
// socket's, under one that has passed (readDeadline.past). This is
// readDeadline's part of a read written out, as SetReadDeadline's is: it
// runs for the two or three reads of every request. The bytes read are
// scanned for the request framing (ScanFraming) in the critical section
// that ends the read's bookkeeping: one lock per read for both.
func (c *conn) Read(p []byte) (int, error) {
	if c.ended.Load() {
		return 0, errEnded
	}
	d := &c.rd
	d.mu.Lock()
	if d.pending != 0 && d.pending < d.past && d.passed() {
		d.mu.Unlock()
		return c.readPassed()
	}
	if d.mustApply() {
		if err := d.applyLocked(c.raw); err != nil {
			d.mu.Unlock()
			return 0, err
		}
	}
	d.reading++
	d.mu.Unlock()
	n, err := c.Conn.Read(p)
	if n == 0 && err != nil {
		n, err = c.readOn(p, err)
	}
	d.mu.Lock()
	d.reading--
	if err != nil {
		d.expired = true
	}
	if n > 0 && c.scan {
		c.fr.Feed(p[:n])
	}
	d.mu.Unlock()
	if n > 0 {
		// The first bytes of the next request end the idle wait; from
		// here the header timeout runs. Loaded first: most reads are not
		// the idle wait's, and a load is not a locked instruction.
		if c.phase.Load() == phaseIdle {
			c.phase.CompareAndSwap(phaseIdle, phaseHeader)
		}
		if !c.rcvFixed {
			c.countReceived(n)
		}
	}
	// The phase first: isTimeout, which allocates, need not look at the
	// error of a read while a handler runs.
	if err != nil && c.phase.Load() != phaseActive {
		c.timeoutRead(err)
	}
	return n, err
}

// readPassed is Read under a deadline that has passed (readDeadline.past):
// it fails at once, and leaves the socket's. net/http ends every request's
// background read so while a handler runs (phaseActive), so this is no
// idle or header timeout then.
func (c *conn) readPassed() (int, error) {
	if c.phase.Load() != phaseActive {
		c.timeoutRead(errPassed)
	}
	return 0, errPassed
}

// readOn goes on with a read that failed (err) with nothing read while the
// socket's deadline, earlier than the one set, cut it (readDeadline.resume).
func (c *conn) readOn(p []byte, err error) (int, error) {
	n := 0
	for n == 0 && err != nil && c.rd.resume(err, c.raw) {
		n, err = c.Conn.Read(p)
	}
	return n, err
}

// timeoutRead counts a read that failed (err) while the server waited for
// a request (phaseIdle) or its head (phaseHeader) as that timeout, once,
// if a deadline cut it; a header timeout is answered (answerHeaderTimeout).
func (c *conn) timeoutRead(err error) {
	if p := c.phase.Load(); p != phaseActive && !c.timedOut.Load() && isTimeout(err) {
		c.timedOut.Store(true)
		if p == phaseIdle {
			c.l.m.timedOut("idle")
		} else {
			c.l.m.timedOut("header")
			c.answerHeaderTimeout()
		}
	}
}

// answerHeaderTimeout tells a client whose request head did not arrive
// within read_header_timeout why its connection closes, as HAProxy's
// "timeout http-request" answers 408 (net/http closes silently): a client
// that was slow, not hostile, learns what happened. net/http closes the
// connection next; the close lingers, as the client may still be sending.
// An idle keep-alive connection timing out gets no answer (it would race
// the client's next request), and neither does a connection the server
// is shutting down.
func (c *conn) answerHeaderTimeout() {
	if c.l.isClosed() {
		return
	}
	// No handler runs on the connection now, so nothing else writes. A
	// 408 that could not be written (the client left, or a TLS handshake
	// never finished: the transport cannot write) has nothing to linger for.
	now := time.Now()
	if c.SetWriteDeadline(now.Add(headerTimeoutWrite)) == nil {
		answer, id := errorAnswer(headerTimeout, now)
		c.l.logRefusal(headerTimeout, id, c.raw.RemoteAddr())
		if _, err := c.write(answer); err == nil {
			c.linger.Store(true)
		}
	}
}

// headerTimeoutWrite bounds writing the 408: it fits in any socket buffer,
// so only a client that stopped reading can take this long.
const headerTimeoutWrite = time.Second

var headerTimeout = &openai.Error{Status: http.StatusRequestTimeout, Type: openai.TypeInvalidRequest, Code: "request_timeout",
	Message: "the request's head did not arrive within the gateway's time limit (server.read_header_timeout)"}

// Close lingers first when asked to (CloseWrite, LingerOnClose); a second
// Close meanwhile (http.Server.Close) closes at once, which ends the drain.
func (c *conn) Close() error {
	if c.linger.Load() && c.draining.CompareAndSwap(false, true) {
		c.l.linger(c)
	}
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

func (c *conn) Write(p []byte) (int, error) {
	// net/http's own refusals are short single writes (httperr.go); a
	// handler's writes go through a 4 KiB buffer, so this test is cheap.
	if len(p) <= 512 && len(p) > 9 && (p[9] == '4' || p[9] == '5') {
		return c.writeRefusal(p)
	}
	return c.write(p)
}

// writeRefusal writes p, a short write that may be one of net/http's
// plain-text refusals: those are rewritten as OpenAI error objects.
func (c *conn) writeRefusal(p []byte) (int, error) {
	e := serverRefusal(p)
	if e == nil {
		e = expectationRefusal(p)
	}
	if e == nil {
		return c.write(p)
	}
	if e.Status == http.StatusRequestHeaderFieldsTooLarge {
		c.l.m.headerTooLarge()
		if c.inRequestLine() {
			e = uriTooLong
		}
	}
	// An OpenAI client expects an error object, not net/http's
	// plain text: the same status, said in JSON.
	// Logged first: a client that has the answer finds its line.
	answer, id := errorAnswer(e, time.Now())
	c.l.logRefusal(e, id, c.raw.RemoteAddr())
	if _, err := c.write(answer); err != nil {
		return 0, err
	}
	return len(p), nil
}

// inRequestLine reports whether net/http's 431, answered when the head
// did not end within its limit, came before the request line ended: the
// URL alone was over the limit (414). False when c does not scan.
func (c *conn) inRequestLine() bool {
	if !c.scan {
		return false
	}
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	return c.fr.InRequestLine()
}

// write writes p to the socket; a write cut by a socket deadline earlier
// than the one last set goes on under that one (writeDeadline).
// writeAll's fast path is written out here: this runs for every answer.
func (c *conn) write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && n < len(p) {
		return c.wd.writeRest(c.Conn, c.raw, p, n, err)
	}
	return n, err
}
