// Package framing refuses HTTP/1.1 requests whose body length is
// ambiguous: a head carrying both Content-Length and Transfer-Encoding
// gets 400 and the connection is closed, as nginx (since 1.21.1) and
// HAProxy do.
//
// Go's server already refuses differing duplicate Content-Length headers
// (400), an invalid Content-Length (400) and any Transfer-Encoding other
// than a single "chunked" (501), in plain text that netguard's connection
// rewrites as OpenAI error objects (netguard/httperr.go). But it accepts "Transfer-Encoding:
// chunked" together with a Content-Length, lets the chunked framing win and
// deletes the Content-Length header before a handler runs (RFC 9112 6.3
// allows this). A front proxy that honoured the Content-Length instead
// would then disagree with us about where the request ends: the opening
// for request smuggling. The handler cannot see the deleted header, so
// this package reads the raw bytes as they arrive: Listener wraps each
// connection with a small scanner that follows the request framing
// (heads, Content-Length bodies, chunked bodies) and notes which request
// heads were ambiguous; Guard answers those requests.
package framing

import (
	"bytes"
	"context"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/sluice-gw/sluice/internal/openai"
)

// Listener wraps ln so every accepted connection is scanned.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Wrap has c scanned: for a listener that wraps the connections it admits
// itself (netguard's, which then sits above the scanner, so the server's
// deadline calls and its connection-state hook reach it first).
func Wrap(c net.Conn) net.Conn { return &conn{Conn: c, s: scanner{ambiguous: -1}} }

type ctxKey struct{}

// ConnContext is for http.Server.ConnContext: it hands the connection's
// scanner to Guard. The scanned connection may be c or lie under other
// wrappers of c that expose NetConn.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	accepted := c
	for {
		if sc, ok := c.(*conn); ok {
			// Set before the server serves the connection, read by Guard
			// on the connection's goroutine after.
			sc.accepted = accepted
			return context.WithValue(ctx, ctxKey{}, sc)
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ctx
		}
		c = w.NetConn()
	}
}

// Guard answers a request whose head was ambiguous with 400 and closes
// the connection; other requests go to next: to its ServeFramed when it is
// a Framed, told what BodyReceived would say.
func Guard(next http.Handler) http.Handler {
	framed, _ := next.(Framed)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Arrival
		if c, ok := r.Context().Value(ctxKey{}).(*conn); ok {
			var ambiguous bool
			if ambiguous, a.BodyReceived = c.next(); ambiguous {
				w.Header().Set("Connection", "close")
				openai.WriteError(w, openai.BadRequest("ambiguous_framing",
					"the request has both Content-Length and Transfer-Encoding headers; send one"))
				return
			}
			a.Conn = c.accepted
		}
		if framed != nil {
			framed.ServeFramed(w, r, a)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Framed is a handler that wants to know what Guard found of each
// request's connection (Arrival), in the look-up Guard makes anyway: the
// handler's own would be a context walk each (and a lock for
// BodyReceived), per request.
type Framed interface {
	http.Handler
	// ServeFramed serves r, which arrived as a says.
	ServeFramed(w http.ResponseWriter, r *http.Request, a Arrival)
}

// Arrival is what Guard knows of a request's connection as the handler
// starts.
type Arrival struct {
	// BodyReceived is BodyReceived(r).
	BodyReceived bool
	// Conn is the connection as the server accepted it (ConnContext's c,
	// which the scanned one may lie under); nil when the request did not
	// come through Listener and ConnContext.
	Conn net.Conn
}

// conn scans what its reads return. The server reads a request's head
// (through this conn) before its handler runs, and handles one request
// of a connection at a time, so the n-th handler call matches the n-th
// head scanned. Requests the server answers without a handler either
// close the connection (malformed heads, 431, 417) or are "OPTIONS *",
// which the scanner does not count.
type conn struct {
	net.Conn
	mu      sync.Mutex
	s       scanner
	handled int // requests that reached Guard
	// accepted is the connection the server accepted, this one or one
	// wrapping it (ConnContext): Arrival.Conn.
	accepted net.Conn
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.s.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite passes net/http's half-close (after an answer sent while the
// client may still be sending) to the wrapped connection, which lingers.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn is the wrapped connection, for other wrappers' hooks
// (netguard's ConnState) to find their own.
func (c *conn) NetConn() net.Conn { return c.Conn }

// InRequestLine reports whether the bytes read so far end inside a
// request line. net/http answers 431 when a head does not end within its
// limit, whichever part is long; netguard asks this then, and answers 414
// instead when the request line alone did not fit (as nginx does). Not
// for a hot path: it takes the scanner's lock.
func (c *conn) InRequestLine() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.inRequestLine()
}

// next counts the request Guard is handing on and reports whether its
// head was ambiguous and whether its body was read whole (BodyReceived).
func (c *conn) next() (ambiguous, received bool) {
	c.mu.Lock()
	i := c.handled
	c.handled++
	ambiguous = c.s.ambiguous >= 0 && i == c.s.ambiguous
	received = c.s.bodies >= c.handled
	c.mu.Unlock()
	return ambiguous, received
}

// BodyReceived reports whether the whole body of r, a request Guard passed
// on, has already been read from its connection: the server holds it in
// its buffer, so reading it (or discarding it after the handler) never
// waits on the client, and a deadline on those reads could not matter.
// False when it cannot tell: r did not come through Listener and Guard,
// the body is still arriving, or the scanner lost the framing.
func BodyReceived(r *http.Request) bool {
	c, ok := r.Context().Value(ctxKey{}).(*conn)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Guard counted r: it is request handled-1 of the connection.
	return c.handled > 0 && c.s.bodies >= c.handled
}

type state uint8

const (
	inHead state = iota
	inBody
	inChunkSize
	inChunkData
	inChunkEnd // the CRLF after a chunk's data
	inTrailer
	lost // framing unknown from here on: stop (Go rejects what it cannot parse)
)

// maxLine bounds the bytes kept of one line (Go refuses larger heads);
// a line buffer larger than keepLine is dropped once its line ends.
const (
	maxLine  = 1 << 20
	keepLine = 4 << 10
)

// scanner follows HTTP/1.1 request framing over a byte stream.
type scanner struct {
	st        state
	heads     int   // heads completed
	bodies    int   // of those, the requests whose body (if any) was read whole
	ambiguous int   // index of the first ambiguous head, -1 = none yet
	remain    int64 // bytes left of a Content-Length body or a chunk
	line      []byte
	// Of the head being read:
	started, http10, hasCL, hasTE, uncounted bool
	cl                                       int64
	// counted: the message being read counts in heads (not "OPTIONS *"),
	// so its body's end counts in bodies.
	counted bool
	// longRequestLine: the framing was lost in a request line longer
	// than maxLine (a max_header_bytes above it lets net/http read on).
	longRequestLine bool
}

// inRequestLine reports whether the bytes fed end inside a request line
// (some of it kept, none of its end seen), or the scanner lost the framing
// there because the line went past maxLine.
func (s *scanner) inRequestLine() bool {
	return s.longRequestLine || s.st == inHead && !s.started && len(s.line) > 0
}

// bodyEnded notes that the current message's body was read whole.
func (s *scanner) bodyEnded() {
	if s.counted {
		s.bodies++
	}
}

func (s *scanner) feed(p []byte) {
	for len(p) > 0 && s.st != lost {
		switch s.st {
		case inBody, inChunkData:
			k := min(int64(len(p)), s.remain)
			p, s.remain = p[k:], s.remain-k
			if s.remain == 0 {
				if s.st == inBody {
					s.st = inHead
					s.bodyEnded()
				} else {
					s.st = inChunkEnd
				}
			}
		case inHead:
			switch {
			case len(s.line) > 0:
				p = s.nextLine(p)
			case s.started:
				p = s.fields(p)
			default:
				p = s.requestLine(p)
			}
		default:
			p = s.nextLine(p)
		}
	}
}

// nextLine scans the line p begins with (completing one kept from an
// earlier read), or keeps p when its line does not end in it; it returns
// what follows the line.
func (s *scanner) nextLine(p []byte) []byte {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		s.line = append(s.line, p...)
		if len(s.line) > maxLine {
			s.longRequestLine = s.inRequestLine()
			s.st, s.line = lost, nil
		}
		return nil
	}
	// A line within one read is scanned where it is; only one
	// that began in an earlier read was kept, and is completed.
	line := p[:i]
	if len(s.line) > 0 {
		s.line = append(s.line, line...)
		line = s.line
	}
	p = p[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	s.endLine(line)
	if cap(s.line) > keepLine {
		s.line = nil // an idle connection keeps no large buffer
	} else {
		s.line = s.line[:0]
	}
	return p
}

// requestLine scans, where it is, the line p begins with while no head
// has started and no line is kept (a request line, or an empty line
// before one), and returns what follows it; a line that does not end in
// p goes to nextLine. It is nextLine and endLine for the first line of
// every request, without their buffer and their state switch.
func (s *scanner) requestLine(p []byte) []byte {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return s.nextLine(p)
	}
	l := p[:i]
	if i > 0 && l[i-1] == '\r' {
		l = l[:i-1]
	}
	s.startHead(l)
	return p[i+1:]
}

// fields scans, where they are, the header field lines of the head being
// read that end within p, up to the head's end, and returns what follows
// it; a line of one byte, or one that ends in a later read, goes to
// nextLine, and fields returns what follows that. It is headLine's field
// case for lines kept in no buffer, without its cut and fold: only a line
// whose name has the length of Content-Length or Transfer-Encoding, and
// starts with their letter, is compared (the canonical spelling first,
// then bytes.EqualFold, as headLine does).
func (s *scanner) fields(p []byte) []byte {
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 2 {
			if i == 0 || i == 1 && p[0] == '\r' {
				s.endHead() // the empty line: the head is complete
				return p[i+1:]
			}
			return s.nextLine(p)
		}
		l := p[:i]
		if l[i-1] == '\r' {
			l = l[:i-1]
		}
		p = p[i+1:]
		const cl, te = "Content-Length", "Transfer-Encoding"
		switch {
		case len(l) > len(cl) && l[0]|0x20 == 'c' && l[len(cl)] == ':' &&
			(string(l[:len(cl)]) == cl || bytes.EqualFold(l[:len(cl)], []byte(cl))):
			s.contentLength(l[len(cl)+1:])
		case len(l) > len(te) && l[0]|0x20 == 't' && l[len(te)] == ':' &&
			(string(l[:len(te)]) == te || bytes.EqualFold(l[:len(te)], []byte(te))):
			s.hasTE = true
		}
	}
}

// parseLength is strconv.ParseInt(string(b), 10, 64) where that gives a
// length (no error, not negative), else -1; without the string, and
// without the generality ParseInt pays for on every request: an optional
// sign, then decimal digits only; a negative value is -1 unless it is
// zero ("-0").
func parseLength(b []byte) int64 {
	neg := len(b) > 0 && b[0] == '-'
	if len(b) > 0 && (b[0] == '+' || neg) {
		b = b[1:]
	}
	if len(b) == 0 {
		return -1
	}
	var n int64
	for _, c := range b {
		d := int64(c) - '0'
		if d < 0 || d > 9 || n > (math.MaxInt64-d)/10 {
			return -1
		}
		n = n*10 + d
	}
	if neg && n != 0 {
		return -1
	}
	return n
}

// contentLength notes a Content-Length field's value: -1 when it is not
// a length or differs from an earlier one (net/http refuses both).
func (s *scanner) contentLength(value []byte) {
	s.hasCL = true
	n := parseLength(bytes.TrimSpace(value))
	if n < 0 || (s.cl != 0 && s.cl != n) {
		s.cl = -1
	} else {
		s.cl = n
	}
}

func (s *scanner) endLine(l []byte) {
	switch s.st {
	case inHead:
		s.headLine(l)
	case inChunkSize:
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
		switch {
		case err != nil || n < 0:
			s.st = lost
		case n == 0:
			s.st = inTrailer
		default:
			s.st, s.remain = inChunkData, n
		}
	case inChunkEnd:
		if len(l) != 0 {
			s.st = lost
			return
		}
		s.st = inChunkSize
	case inTrailer:
		if len(l) == 0 {
			s.st = inHead
			s.bodyEnded()
		}
	}
}

func (s *scanner) headLine(l []byte) {
	if !s.started {
		s.startHead(l)
		return
	}
	if len(l) > 0 {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return // Go refuses it; nothing to track
		}
		// The length first: most header names are neither, and this
		// runs on every header line of every request.
		switch {
		case len(name) == len("Content-Length") && bytes.EqualFold(name, []byte("Content-Length")):
			s.contentLength(value)
		case len(name) == len("Transfer-Encoding") && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			s.hasTE = true
		}
		return
	}
	s.endHead() // the empty line: the head is complete
}

// startHead scans a line read while no head has started: the request
// line, or an empty line before it.
func (s *scanner) startHead(l []byte) {
	if len(l) == 0 {
		return // empty lines before a request line are tolerated
	}
	s.started, s.hasCL, s.hasTE, s.cl = true, false, false, 0
	s.http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
	// net/http answers "OPTIONS *" itself: no handler call to match.
	s.uncounted = bytes.HasPrefix(l, []byte("OPTIONS * "))
	if bytes.HasPrefix(l, []byte("PRI ")) {
		s.st = lost // an HTTP/2 preface: net/http refuses it and closes
	}
}

// endHead notes the end of the head being read (its empty line).
func (s *scanner) endHead() {
	idx := s.heads
	if !s.uncounted {
		s.heads++
	}
	s.started, s.counted = false, !s.uncounted
	switch {
	case s.hasCL && s.hasTE:
		if s.ambiguous < 0 {
			s.ambiguous = idx
		}
		s.st = lost // the connection ends with this request
	case s.hasTE && !s.http10:
		s.st = inChunkSize
	case s.cl < 0:
		s.st = lost // net/http refuses it and closes
	// HTTP/1.0 with Transfer-Encoding alone: net/http ignores the header,
	// so the body is empty, as with no header at all.
	case s.hasCL && s.cl > 0:
		s.st, s.remain = inBody, s.cl
	default:
		s.bodyEnded() // no body
	}
}
