// Package framing follows HTTP/1.1 request framing over the bytes a
// connection reads, so that requests whose body length is ambiguous can be
// refused: a head carrying both Content-Length and Transfer-Encoding gets
// 400 and the connection is closed, as nginx (since 1.21.1) and HAProxy do.
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
// the raw bytes are read as they arrive: Scanner follows the framing
// (heads, Content-Length bodies, chunked bodies) and notes which request
// heads were ambiguous. It is only the parser: netguard's connection feeds
// it from its own Read (one connection layer per accepted connection, no
// wrapper of this package's) and netguard.Guard answers what it found.
package framing

import (
	"bytes"
	"math"
	"strconv"
)

// Scanner follows the request framing of one connection's bytes and
// matches the requests handed to handlers with the heads it scanned. The
// server reads a request's head before its handler runs, and handles one
// request of a connection at a time, so the n-th handler call matches the
// n-th head scanned. Requests the server answers without a handler either
// close the connection (malformed heads, 431, 417) or are "OPTIONS *",
// which the scanner does not count.
//
// Not safe for concurrent use: its owner (netguard's connection) feeds it
// and asks it under the lock it holds anyway. Make one with NewScanner.
type Scanner struct {
	s       scanner
	handled int // requests handed on (Next)
}

// NewScanner is a scanner at the start of a connection; a head with more
// than maxFields header field lines (Host aside) is reported (Head).
func NewScanner(maxFields int) Scanner {
	return Scanner{s: scanner{ambiguous: -1, manyFields: -1, maxFields: maxFields}}
}

// Feed scans p, the bytes of the connection's latest read.
func (x *Scanner) Feed(p []byte) { x.s.feed(p) }

// Head is what the scanner found of the head of a request handed on.
type Head struct {
	// Ambiguous: the head had both Content-Length and Transfer-Encoding.
	Ambiguous bool
	// ManyFields: the head had more header field lines than NewScanner's
	// maxFields, not counting Host (net/http keeps it out of the header
	// map, whose lines the limit was first defined on) nor obs-fold
	// continuations (net/http joins them to the field before).
	ManyFields bool
	// Scanned: the head's end was scanned. False once the scanner lost
	// the framing before it (net/http then usually closes): ManyFields
	// is unknown, and the caller counts the parsed header instead.
	Scanned bool
	// Received: the request's body was read whole (Received).
	Received bool
}

// Next counts the request being handed to a handler and reports what its
// head was.
func (x *Scanner) Next() Head {
	i := x.handled
	x.handled++
	return Head{Ambiguous: i == x.s.ambiguous, ManyFields: i == x.s.manyFields,
		Scanned: x.s.heads >= x.handled, Received: x.s.bodies >= x.handled}
}

// Received reports whether the whole body of the request Next counted
// last has been read from the connection: the server holds it in its
// buffer, so reading it (or discarding it after the handler) never waits
// on the client. False before Next, while the body is still arriving, or
// once the scanner lost the framing.
func (x *Scanner) Received() bool { return x.handled > 0 && x.s.bodies >= x.handled }

// InRequestLine reports whether the bytes fed so far end inside a request
// line. net/http answers 431 when a head does not end within its limit,
// whichever part is long; netguard asks this then, and answers 414
// instead when the request line alone did not fit (as nginx does).
func (x *Scanner) InRequestLine() bool { return x.s.inRequestLine() }

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

// maxLine bounds the bytes kept of one line: above the largest head
// net/http can be set to read (server.max_header_bytes, at most 16 MiB,
// plus the 4 KiB it allows beyond), so a line it serves never loses the
// framing here (at 1 MiB, a long header line let an ambiguous request
// after it pass). The scanner sees only what net/http reads, and net/http
// stops reading a head at its limit (431): a line kept here is never much
// larger than the one net/http holds itself. A line buffer larger than
// keepLine is dropped once its line ends.
const (
	maxLine  = 16<<20 + 8<<10
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
	// manyFields: index of the first head with more than maxFields field
	// lines (Host and folds aside), -1 = none yet; nfields counts the
	// lines of the head being read. An int per line: the limit is taken
	// where every line is scanned anyway, not by ranging over net/http's
	// header map per request (netguard.Guard).
	manyFields, maxFields, nfields int
	// Of the head being read:
	started, http10, hasCL, hasTE, uncounted bool
	cl                                       int64
	// preface: the request line is "PRI * HTTP/2.0" and no field line
	// has come yet (Host included).
	preface bool
	// counted: the message being read counts in heads (not "OPTIONS *"),
	// so its body's end counts in bodies.
	counted bool
	// longRequestLine: the framing was lost in a request line longer
	// than maxLine (a max_header_bytes above it lets net/http read on).
	longRequestLine bool
	// inCL: the head's last field line was a Content-Length, which a line
	// starting with a space or a tab continues (obs-fold: net/http reads
	// it as a space, so "Content-Length:" folded onto " 5" is 5). clBefore
	// is cl before that field, clParts its value's non-empty parts so far.
	inCL     bool
	clParts  uint8
	clBefore int64
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
		case l[0] == ' ' || l[0] == '\t':
			s.fold(l)
			continue // a continuation, not a field line
		case len(l) > len(te) && l[0]|0x20 == 't' && l[len(te)] == ':' &&
			(string(l[:len(te)]) == te || bytes.EqualFold(l[:len(te)], []byte(te))):
			s.hasTE, s.inCL = true, false
		case len(l) > 4 && l[4] == ':' && l[0]|0x20 == 'h' &&
			(string(l[:4]) == "Host" || bytes.EqualFold(l[:4], []byte("Host"))):
			s.inCL, s.preface = false, false
			continue // not in net/http's header map: not counted
		default:
			s.inCL = false
		}
		s.nfields++
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
// a length or differs from an earlier one (net/http refuses both), or is
// empty (unless a folded line continues it: fold).
func (s *scanner) contentLength(value []byte) {
	s.hasCL, s.inCL, s.clBefore, s.clParts = true, true, s.cl, 0
	s.clPart(bytes.TrimSpace(value))
}

// fold scans a field line that starts with a space or a tab: net/http
// reads it as the previous field's value continued after a space (an
// obs-fold, RFC 9112 5.2). Only a Content-Length's continuation matters:
// its value is the parts joined, a length only when exactly one part is
// not empty. Without it, a request whose Content-Length is folded
// ("Content-Length:" then " 5"), which net/http serves, would lose the
// framing here, and an ambiguous request pipelined after it would pass.
func (s *scanner) fold(l []byte) {
	if s.inCL {
		s.clPart(bytes.TrimSpace(l))
	}
}

// clPart notes a part of the value of the Content-Length field being read.
func (s *scanner) clPart(v []byte) {
	if len(v) == 0 {
		if s.clParts == 0 {
			s.cl = -1 // empty so far: net/http refuses it, unless a fold follows
		}
		return
	}
	s.clParts++
	n := int64(-1)
	if s.clParts == 1 {
		n = parseLength(v)
	}
	if n < 0 || (s.clBefore != 0 && s.clBefore != n) {
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
		if l[0] == ' ' || l[0] == '\t' {
			s.fold(l)
			return
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		// The length first: most header names are neither, and this
		// runs on every header line of every request.
		if !ok || len(name) != len("Host") || !bytes.EqualFold(name, []byte("Host")) {
			s.nfields++ // as fields counts
		} else {
			s.preface = false
		}
		switch {
		case !ok:
			s.inCL = false // Go refuses it; nothing to track
		case len(name) == len("Content-Length") && bytes.EqualFold(name, []byte("Content-Length")):
			s.contentLength(value)
		case len(name) == len("Transfer-Encoding") && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			s.hasTE, s.inCL = true, false
		default:
			s.inCL = false
		}
		return
	}
	s.endHead() // the empty line: the head is complete
}

// startHead scans a line read while no head has started: the request
// line, or an empty line before it.
func (s *scanner) startHead(l []byte) {
	// After a POST net/http skips up to four CR or LF bytes before the
	// request line (RFC 9112 2.2); where it skips none, a CR left makes
	// the line malformed and it closes. So a line's leading CRs are
	// dropped: "\rOPTIONS * HTTP/1.1" is the OPTIONS * net/http answers
	// itself, which must not count, and "\r\r\n" is an empty line.
	for len(l) > 0 && l[0] == '\r' {
		l = l[1:]
	}
	if len(l) == 0 {
		return // empty lines before a request line are tolerated
	}
	s.started, s.hasCL, s.hasTE, s.cl, s.inCL, s.nfields = true, false, false, 0, false, 0
	s.http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
	// net/http answers "OPTIONS *" itself: no handler call to match.
	s.uncounted = bytes.HasPrefix(l, []byte("OPTIONS * "))
	// "PRI * HTTP/2.0" is the HTTP/2 preface only with no field line
	// (endHead); any other PRI request, this line with fields among them,
	// net/http serves as an HTTP/1.1 one and reads on after it.
	s.preface = string(l) == "PRI * HTTP/2.0"
}

// endHead notes the end of the head being read (its empty line).
func (s *scanner) endHead() {
	idx := s.heads
	if !s.uncounted {
		s.heads++
	}
	s.started, s.counted = false, !s.uncounted
	if s.nfields > s.maxFields && s.manyFields < 0 && !s.uncounted {
		s.manyFields = idx
	}
	switch {
	case s.hasCL && s.hasTE:
		if s.ambiguous < 0 {
			s.ambiguous = idx
		}
		s.st = lost // the connection ends with this request
	case s.preface && s.nfields == 0:
		// The HTTP/2 preface: net/http hands it to the handler and
		// closes after it (its body is what follows, to the end).
		s.st = lost
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
