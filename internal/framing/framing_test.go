package framing

import (
	"bytes"
	"strings"
	"testing"
)

const (
	clReq      = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chunkedReq = "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
	bothReq    = "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	closeReq   = "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)

// FuzzScanner: the scanner's verdict (ambiguous heads, heads and bodies
// read whole) does not depend on how the stream is split into reads, and
// it never panics.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{clReq + chunkedReq + bothReq, chunkedReq + clReq, bothReq, "OPTIONS * HTTP/1.1\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\nContent-Length: 2\n\nabPOST / HTTP/1.1\ntransfer-encoding: chunked\n\nffffffffffffffff\r\n", "\r\n\r\nGET / HTTP/1.1\r\n\r\n"} {
		f.Add([]byte(s), uint16(1))
		f.Add([]byte(s), uint16(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint16) {
		whole := scanner{ambiguous: -1, manyFields: -1, maxFields: 2}
		whole.feed(data)
		split := scanner{ambiguous: -1, manyFields: -1, maxFields: 2}
		n := int(step%64) + 1
		for i := 0; i < len(data); i += n {
			split.feed(data[i:min(i+n, len(data))])
		}
		if whole.manyFields != split.manyFields {
			t.Fatalf("split by %d: first head with too many fields %d/%d", n, whole.manyFields, split.manyFields)
		}
		if whole.ambiguous != split.ambiguous || whole.heads != split.heads || whole.bodies != split.bodies || whole.st != split.st {
			t.Fatalf("split by %d: ambiguous %d/%d heads %d/%d bodies %d/%d state %d/%d", n, whole.ambiguous, split.ambiguous,
				whole.heads, split.heads, whole.bodies, split.bodies, whole.st, split.st)
		}
		if whole.bodies > whole.heads {
			t.Fatalf("%d bodies read whole of %d heads", whole.bodies, whole.heads)
		}
	})
}

// FuzzScannerMatchesOld: the scanner (head lines scanned in place) and
// oldScanner (oldscanner_test.go, every line through one path) end every
// read in the same state, whatever the stream and wherever it is split:
// cuts gives the reads' lengths in turn (1 to 256 bytes, then again).
func FuzzScannerMatchesOld(f *testing.F) {
	for _, s := range []string{clReq + chunkedReq + bothReq, chunkedReq + clReq, bothReq, "OPTIONS * HTTP/1.1\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\nContent-Length: 2\n\nabPOST / HTTP/1.1\ntransfer-encoding: chunked\n\nffffffffffffffff\r\n", "\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nCONTENT-LENGTH:3\r\ncontent-length:  3 \r\nX: y\r\n\r\nabc",
		"POST / HTTP/1.1\r\nContent-Length:\r\nContent-Lengthy: 1\r\nTransfer-Encodinh: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTranſfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx",
		"POST / HTTP/1.0\r\nTRANSFER-encoding: chunked\r\nContent-Length: 1\r\n\r\nx",
		"POST / HTTP/1.1\r\nx\nContent-Length: 1\r\r\nContent-Length: 2\r\n\r\nab",
		"POST / HTTP/1.1\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 1\r\n\r\nz",
		"POST / HTTP/1.1\r\nContent-Length:\r\n 2\r\n\t\r\nX: a\r\n 5\r\n\r\nab",
		"POST / HTTP/1.1\nContent-Length: 1\n Content-Length:\n\t1\ncontent-length:\n 1\n\nx",
		"POST / HTTP/1.1\r\nContent-Length:\r\n 1\r\n 1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\rOPTIONS * HTTP/1.1\r\n\r\n\r\r\n" + bothReq} {
		for _, v := range []string{"-0", "+5", "-5", "+", "", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "5\u00a0", "0x5", "1_0"} {
			f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: "+v+"\r\n\r\n"+s), []byte{9})
		}
		f.Add([]byte(s), []byte{1})
		f.Add([]byte(s), []byte{6, 30, 2})
		f.Add([]byte(s), []byte{255})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		s, o := scanner{ambiguous: -1, manyFields: -1, maxFields: 2}, oldScanner{ambiguous: -1}
		for i, k := 0, 0; i < len(data); k++ {
			n := len(data)
			if len(cuts) > 0 {
				n = int(cuts[k%len(cuts)]) + 1
			}
			end := min(i+n, len(data))
			s.feed(data[i:end])
			o.feed(data[i:end])
			i = end
			type view struct {
				st                                                      state
				heads, bodies, ambiguous                                int
				remain, cl                                              int64
				started, http10, hasCL, hasTE, uncounted, counted, inCL bool
			}
			ns := view{s.st, s.heads, s.bodies, s.ambiguous, s.remain, s.cl, s.started, s.http10, s.hasCL, s.hasTE, s.uncounted, s.counted, s.inCL}
			os := view{o.st, o.heads, o.bodies, o.ambiguous, o.remain, o.cl, o.started, o.http10, o.hasCL, o.hasTE, o.uncounted, o.counted, o.inCL}
			if ns != os || !bytes.Equal(s.line, o.line) {
				t.Fatalf("after %d bytes: new %+v, old %+v (line %q / %q)", end, ns, os, s.line, o.line)
			}
		}
	})
}

// The scanner tells a head cut inside its request line (the URL too long
// for net/http's limit: 414) from one cut in its header fields (431),
// also after a request with a body on the same connection, and past the
// line it keeps (maxLine).
func TestScannerInRequestLine(t *testing.T) {
	for _, c := range []struct {
		name  string
		feeds []string
		want  bool
	}{
		{"nothing read", nil, false},
		{"request line cut", []string{"GET /v1/models?q=aaaa", "aaaa"}, true},
		{"request line ended", []string{"GET /v1/models HTTP/1.1\r\n"}, false},
		{"header cut", []string{"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: aaaa"}, false},
		{"blank lines first", []string{"\r\n\r\nGET /v1/mo"}, true},
		{"second request's line cut", []string{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /?q=aa"}, true},
		{"inside a body", []string{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{}"}, false},
		{"request line past maxLine", []string{"GET /?q=" + strings.Repeat("a", maxLine), "aa"}, true},
		{"header past maxLine", []string{"GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", maxLine), "aa"}, false},
	} {
		s := scanner{ambiguous: -1, manyFields: -1, maxFields: 2}
		for _, f := range c.feeds {
			s.feed([]byte(f))
		}
		if got := s.inRequestLine(); got != c.want {
			t.Errorf("%s: inRequestLine %v, want %v", c.name, got, c.want)
		}
	}
}
