package framing

// oldScanner is the scanner as it was before it scanned head lines in
// place (kept verbatim but for its name, the CRs net/http skips before a
// request line, and obs-fold: a folded
// Content-Length is re-read here from its value joined, the scanner counts
// its parts): FuzzScannerMatchesOld checks the new one against it on
// arbitrary streams split at arbitrary points.

import (
	"bytes"
	"strconv"
)

// oldScanner follows HTTP/1.1 request framing over a byte stream.
type oldScanner struct {
	st        state
	heads     int   // heads completed
	bodies    int   // of those, the requests whose body (if any) was read whole
	ambiguous int   // index of the first ambiguous head, -1 = none yet
	remain    int64 // bytes left of a Content-Length body or a chunk
	line      []byte
	// Of the head being read:
	started, http10, hasCL, hasTE, uncounted, preface bool
	cl                                                int64
	// counted: the message being read counts in heads (not "OPTIONS *"),
	// so its body's end counts in bodies.
	counted bool
	// inCL: the last field line was a Content-Length; clVal its value so
	// far (folds joined by a space), clBefore cl before it.
	inCL     bool
	clVal    []byte
	clBefore int64
}

// bodyEnded notes that the current message's body was read whole.
func (s *oldScanner) bodyEnded() {
	if s.counted {
		s.bodies++
	}
}

func (s *oldScanner) feed(p []byte) {
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
		default:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				s.line = append(s.line, p...)
				if len(s.line) > maxLine {
					s.st = lost
				}
				return
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
		}
	}
}

func (s *oldScanner) endLine(l []byte) {
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

func (s *oldScanner) headLine(l []byte) {
	if !s.started {
		l = bytes.TrimLeft(l, "\r") // net/http skips CRs before a request line
		if len(l) == 0 {
			return // empty lines before a request line are tolerated
		}
		s.started, s.hasCL, s.hasTE, s.cl, s.inCL = true, false, false, 0, false
		s.http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
		// net/http answers "OPTIONS *" itself: no handler call to match.
		s.uncounted = bytes.HasPrefix(l, []byte("OPTIONS * "))
		// The HTTP/2 preface is this line with no field line (below).
		s.preface = string(l) == "PRI * HTTP/2.0"
		return
	}
	if len(l) > 0 {
		if l[0] == ' ' || l[0] == '\t' {
			if s.inCL { // obs-fold: net/http joins the lines with a space
				s.clVal = append(append(s.clVal, ' '), bytes.TrimSpace(l)...)
				s.readCL()
			}
			return
		}
		s.inCL, s.preface = false, false
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return // Go refuses it; nothing to track
		}
		// The length first: most header names are neither, and this
		// runs on every header line of every request.
		switch {
		case len(name) == len("Content-Length") && bytes.EqualFold(name, []byte("Content-Length")):
			s.hasCL, s.inCL, s.clBefore = true, true, s.cl
			s.clVal = append(s.clVal[:0], bytes.TrimSpace(value)...)
			s.readCL()
		case len(name) == len("Transfer-Encoding") && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			s.hasTE = true
		}
		return
	}
	// The empty line: the head is complete.
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
	case s.preface:
		s.st = lost // the HTTP/2 preface: net/http closes after it
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

// readCL reads the Content-Length field's value as it stands (clVal).
func (s *oldScanner) readCL() {
	n, err := strconv.ParseInt(string(bytes.TrimSpace(s.clVal)), 10, 64)
	if err != nil || n < 0 || (s.clBefore != 0 && s.clBefore != n) {
		s.cl = -1
	} else {
		s.cl = n
	}
}
