package h1client

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// Response-side limits: a head past them is malformed. A single line
// longer than Options.ReadBufferSize (32 KiB by default) is too.
const (
	maxHeaderFields = 256
	maxHeaderBytes  = 256 << 10
	max1xx          = 5 // informational heads skipped before a final one
)

// ErrMalformed: the backend's response is not HTTP/1.1 this client
// accepts (the caller maps it like any other transport error).
var ErrMalformed = errors.New("h1client: malformed response")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// head is a parsed status line and header block.
type head struct {
	code   int
	minor  int // HTTP/1.minor
	status string
	header http.Header
	// framing says which of the fields frame reads the block had, so
	// frame looks up only those: most answers carry one of three.
	framing framingFields
}

// framingFields are bits of the fields that decide a body's framing.
type framingFields uint8

const (
	hasTransferEncoding framingFields = 1 << iota
	hasContentLength
	hasConnection
)

// headScratch is a connection's reused space for reading a head: the
// header block's bytes and where each of its lines ends. The ends live
// here rather than in an array on readHead's stack: 256 of them made its
// frame 1.2 KiB, and readHead runs at one of the deepest points of a
// request's goroutine, where it took the goroutine's stack past 8 KiB
// (docs/RELIABILITY.md, "Memory per held stream, continued").
type headScratch struct {
	block []byte
	ends  []int32
}

// readFinalHead reads heads until a final (non-1xx) one.
func readFinalHead(br *reader, scratch *headScratch) (head, error) {
	for i := 0; ; i++ {
		h, err := readHead(br, scratch)
		if err != nil || h.code >= 200 {
			return h, err
		}
		if h.code == http.StatusSwitchingProtocols {
			return head{}, malformed("101 Switching Protocols was not asked for")
		}
		if i == max1xx {
			return head{}, malformed("too many 1xx responses")
		}
	}
}

// readHead reads one status line and header block. scratch is reused
// for the block's bytes, which become one string that every name and
// value slices.
func readHead(br *reader, scratch *headScratch) (head, error) {
	line, err := readLine(br)
	if err != nil {
		return head{}, err
	}
	h, err := parseStatusLine(line)
	if err != nil {
		return head{}, err
	}
	block, ends := scratch.block[:0], scratch.ends[:0]
	for {
		line, err := readLine(br)
		if err != nil {
			return head{}, err
		}
		if len(line) == 0 {
			break
		}
		if len(ends) == maxHeaderFields {
			return head{}, malformed("too many header fields")
		}
		if len(block)+len(line) > maxHeaderBytes {
			return head{}, malformed("header block too large")
		}
		block = append(block, line...)
		ends = append(ends, int32(len(block)))
	}
	scratch.block, scratch.ends = block, ends
	h.header, h.framing, err = parseFields(string(block), ends)
	return h, err
}

// errLineTooLong: a line longer than the reader's bound.
var errLineTooLong = malformed("header line too long")

// readLine returns one CRLF-terminated line without its CRLF; a line
// (CRLF included) must fit Options.ReadBufferSize.
func readLine(br *reader) ([]byte, error) {
	line, err := br.line()
	switch {
	case err == errLineTooLong:
		return nil, err
	case err != nil:
		return nil, err
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, malformed("line not ended by CRLF")
	}
	return line[:len(line)-2], nil
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT SP reason".
func parseStatusLine(line []byte) (head, error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (line[7] != '0' && line[7] != '1') {
		return head{}, malformed("status line")
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return head{}, malformed("status code")
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return head{}, malformed("status code")
	}
	reason := line[12:]
	if len(reason) > 0 {
		if reason[0] != ' ' || !validValue(reason) {
			return head{}, malformed("reason phrase")
		}
		reason = reason[1:]
	}
	return head{code: code, minor: int(line[7] - '0'), status: statusText(code, reason)}, nil
}

// statusText is Response.Status ("200 OK"), allocated only when the
// reason is not the standard one.
func statusText(code int, reason []byte) string {
	if code == http.StatusOK && string(reason) == "OK" {
		return "200 OK"
	}
	return strconv.Itoa(code) + " " + string(reason)
}

// parseFields splits block (the header lines back to back; ends[i] is
// where line i ends) into a header whose names and values slice block,
// noting which of the framing fields it has.
func parseFields(block string, ends []int32) (http.Header, framingFields, error) {
	hdr := make(http.Header, len(ends))
	values := make([]string, len(ends)) // one backing array, as net/textproto does
	var fields framingFields
	start := 0
	for i, end := range ends {
		line := block[start:end]
		start = int(end)
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, malformed("header field name") // also a folded (obs-fold) line
		}
		key := line[:colon]
		canonical := knownField(key)
		if !canonical {
			token, c := canonicalToken(key)
			if !token {
				return nil, 0, malformed("header field name")
			}
			canonical = c
		}
		v := strings.Trim(line[colon+1:], " \t")
		if !validValue(v) {
			return nil, 0, malformed("header field value")
		}
		if !canonical {
			key = textproto.CanonicalMIMEHeaderKey(key) // allocates the canonical form
		}
		values[i] = v
		switch key {
		case "Transfer-Encoding":
			fields |= hasTransferEncoding
		case "Content-Length":
			fields |= hasContentLength
		case "Connection":
			fields |= hasConnection
		}
		if vs, ok := hdr[key]; ok {
			hdr[key] = append(vs, v)
		} else {
			hdr[key] = values[i : i+1 : i+1]
		}
	}
	return hdr, fields, nil
}

// knownField reports whether name is one of the fields most answers carry,
// spelled canonically (so a valid token, kept as it is): a comparison or
// two each instead of the byte-by-byte check.
func knownField(name string) bool {
	switch name {
	case "Content-Type", "Content-Length", "Date", "Server", "Connection", "Transfer-Encoding", "Cache-Control", "Vary":
		return true
	}
	return false
}

// framing is how a response's body is delimited.
type framing struct {
	length  int64 // Content-Length; -1 for chunked or until close
	chunked bool
	none    bool // no body whatever the header says (HEAD, 1xx, 204, 304)
	close   bool // the connection cannot be reused after this response
}

// frame decides the body's framing (RFC 9112 §6.3): a response with both
// Transfer-Encoding and Content-Length, or a coding other than chunked,
// is rejected rather than guessed at.
func frame(h head, method string, reqClose bool) (framing, error) {
	f := framing{length: -1, close: reqClose || wantsClose(h)}
	var te, cl []string
	var hasTE, hasCL bool
	if h.framing&hasTransferEncoding != 0 {
		te, hasTE = h.header["Transfer-Encoding"]
	}
	if h.framing&hasContentLength != 0 {
		cl, hasCL = h.header["Content-Length"]
	}
	switch {
	case hasTE && hasCL:
		return f, malformed("both Transfer-Encoding and Content-Length")
	case hasTE:
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") || h.minor == 0 {
			return f, malformed("transfer coding")
		}
		f.chunked = true
		delete(h.header, "Transfer-Encoding") // as net/http: the body arrives decoded
	case hasCL:
		n, err := contentLength(cl)
		if err != nil {
			return f, err
		}
		f.length = n
		if len(cl) > 1 {
			h.header["Content-Length"] = cl[:1:1] // equal values are one (net/http does the same)
		}
	}
	if h.code == http.StatusNoContent || h.code == http.StatusNotModified {
		f.none, f.chunked, f.length = true, false, 0
		return f, nil
	}
	if method == http.MethodHead { // the length the GET would have had, if given
		f.none, f.chunked = true, false
		return f, nil
	}
	if !f.chunked && f.length < 0 {
		f.close = true // delimited by the connection's end
	}
	return f, nil
}

// contentLength parses Content-Length: digits only; repeated values must
// agree.
func contentLength(vs []string) (int64, error) {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return 0, malformed("differing Content-Length values")
		}
	}
	v := vs[0]
	if v == "" || len(v) > 18 {
		return 0, malformed("Content-Length")
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, malformed("Content-Length")
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, nil
}

// wantsClose: Connection: close, or HTTP/1.0 without keep-alive.
func wantsClose(h head) bool {
	closeTok, keep := false, false
	if h.framing&hasConnection == 0 {
		return h.minor == 0
	}
	for _, v := range h.header["Connection"] {
		for v != "" {
			tok, rest, _ := strings.Cut(v, ",")
			v = rest
			switch tok = strings.TrimSpace(tok); {
			case strings.EqualFold(tok, "close"):
				closeTok = true
			case strings.EqualFold(tok, "keep-alive"):
				keep = true
			}
		}
	}
	return closeTok || h.minor == 0 && !keep
}
