package framing

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
)

// served is what net/http's server does with stream, as far as the
// scanner must follow it: the requests it hands to a handler in turn
// (each read whole), until the first it refuses, closes after, or that
// carries both Content-Length and Transfer-Encoding (ambiguous: Guard
// refuses it and the connection ends). It reads with net/http's own
// parser (http.ReadRequest, textproto for the raw header fields) and
// repeats the server's steps around it: the CR/LF skipped after a POST,
// OPTIONS * answered without a handler, the checks that close. fields
// holds each handled request's header field lines but Host's, as
// textproto counts them (a value per line, folds joined).
func served(stream []byte) (handled int, ambiguous bool, fields []int) {
	br := bufio.NewReaderSize(bytes.NewReader(stream), len(stream)+16)
	last := ""
	for {
		if last == "POST" {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		// The head's raw fields, as textproto reads them (folds joined).
		if _, err := br.Peek(1); err != nil {
			return handled, false, fields
		}
		rest, _ := br.Peek(br.Buffered())
		tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest)))
		if _, err := tr.ReadLine(); err != nil {
			return handled, false, fields
		}
		raw, err := tr.ReadMIMEHeader()
		if err != nil {
			return handled, false, fields
		}
		req, err := http.ReadRequest(br)
		// http1ServerSupportsRequest: HTTP/1.x, and "PRI * HTTP/2.0",
		// which is served as HTTP/1.1 when it has header fields (with
		// none it is the HTTP/2 preface: Host missing below, it stops).
		if err != nil || req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
			return handled, false, fields
		}
		last = req.Method
		if len(raw["Content-Length"]) > 0 && len(raw["Transfer-Encoding"]) > 0 {
			return handled, true, fields
		}
		if req.ProtoAtLeast(1, 1) && len(raw["Host"]) == 0 && req.Method != "CONNECT" {
			return handled, false, fields
		}
		if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
			return handled, false, fields
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return handled, false, fields
		}
		if req.Method == "OPTIONS" && req.RequestURI == "*" {
			continue // answered by net/http: no handler call
		}
		handled++
		n := 0
		for k, vs := range raw {
			if k != "Host" {
				n += len(vs)
			}
		}
		fields = append(fields, n)
		if req.Close {
			return handled, false, fields
		}
	}
}

// FuzzScannerMatchesNetHTTP: wherever net/http hands requests to a
// handler in turn, the scanner counts the same heads and bodies read
// whole, and marks the ambiguous request net/http would serve next as
// the one after them; it marks the first request net/http serves with
// more than fieldLimit header field lines (Host aside), and no other, as
// ManyFields. A gap here is a request smuggled past Guard (the
// scanner lost or miscounted the framing while net/http served on).
func FuzzScannerMatchesNetHTTP(f *testing.F) {
	for _, s := range []string{clReq + chunkedReq + bothReq, chunkedReq + clReq + bothReq,
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + clReq + bothReq,
		clReq + "\r\rOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 2\r\n\r\nab" + bothReq,
		"POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + bothReq,
		"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq,
		// A PRI request that is no HTTP/2 preface is served and read on
		// after: the scanner lost the framing at any "PRI " line.
		"PRI /p HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq,
		"PRI * HTTP/2.0\r\nHost: x\r\n\r\n" + clReq + bothReq,
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n1\r\na\r\n0\r\nT: 1\n\n" + bothReq,
		"GET / HTTP/1.1\r\nhost: x\r\nA: 1\r\n b\r\nA: 2\r\n\r\nGET / HTTP/1.1\r\nHOST: x\r\nA: 1\r\nB: 2\r\nC:\r\n\r\n" + closeReq} {
		f.Add([]byte(s), []byte{255})
		f.Add([]byte(s), []byte{3, 17})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		handled, ambiguous, fields := served(data)
		const fieldLimit = 2 // small, so that the fuzzer reaches it
		s := NewScanner(fieldLimit)
		for i, k := 0, 0; i < len(data); k++ {
			n := len(data)
			if len(cuts) > 0 {
				n = int(cuts[k%len(cuts)]) + 1
			}
			end := min(i+n, len(data))
			s.Feed(data[i:end])
			i = end
		}
		many := false // a request before had too many fields: the rest are not marked
		for k := range handled {
			h := s.Next()
			if h.Ambiguous || !h.Received || !h.Scanned {
				t.Fatalf("request %d of %d net/http serves: %+v (scanner %+v)", k, handled, h, s.s)
			}
			if want := !many && fields[k] > fieldLimit; h.ManyFields != want {
				t.Fatalf("request %d of %d net/http serves has %d fields: ManyFields %v, want %v (scanner %+v)", k, handled, fields[k], h.ManyFields, want, s.s)
			}
			many = many || fields[k] > fieldLimit
		}
		if ambiguous {
			if h := s.Next(); !h.Ambiguous {
				t.Fatalf("request %d, which has both headers, not marked ambiguous (scanner %+v)", handled, s.s)
			}
		}
	})
}
