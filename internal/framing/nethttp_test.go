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
// OPTIONS * answered without a handler, the checks that close.
func served(stream []byte) (handled int, ambiguous bool) {
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
			return handled, false
		}
		rest, _ := br.Peek(br.Buffered())
		tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest)))
		if _, err := tr.ReadLine(); err != nil {
			return handled, false
		}
		raw, err := tr.ReadMIMEHeader()
		if err != nil {
			return handled, false
		}
		req, err := http.ReadRequest(br)
		if err != nil || req.ProtoMajor != 1 {
			return handled, false
		}
		last = req.Method
		if len(raw["Content-Length"]) > 0 && len(raw["Transfer-Encoding"]) > 0 {
			return handled, true
		}
		if req.ProtoAtLeast(1, 1) && len(raw["Host"]) == 0 && req.Method != "CONNECT" {
			return handled, false
		}
		if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
			return handled, false
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return handled, false
		}
		if req.Method == "OPTIONS" && req.RequestURI == "*" {
			continue // answered by net/http: no handler call
		}
		handled++
		if req.Close {
			return handled, false
		}
	}
}

// FuzzScannerMatchesNetHTTP: wherever net/http hands requests to a
// handler in turn, the scanner counts the same heads and bodies read
// whole, and marks the ambiguous request net/http would serve next as
// the one after them. A gap here is a request smuggled past Guard (the
// scanner lost or miscounted the framing while net/http served on).
func FuzzScannerMatchesNetHTTP(f *testing.F) {
	for _, s := range []string{clReq + chunkedReq + bothReq, chunkedReq + clReq + bothReq,
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + clReq + bothReq,
		clReq + "\r\rOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 2\r\n\r\nab" + bothReq,
		"POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + bothReq,
		"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq,
		"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n1\r\na\r\n0\r\nT: 1\n\n" + bothReq} {
		f.Add([]byte(s), []byte{255})
		f.Add([]byte(s), []byte{3, 17})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		handled, ambiguous := served(data)
		s := NewScanner()
		for i, k := 0, 0; i < len(data); k++ {
			n := len(data)
			if len(cuts) > 0 {
				n = int(cuts[k%len(cuts)]) + 1
			}
			end := min(i+n, len(data))
			s.Feed(data[i:end])
			i = end
		}
		for k := range handled {
			amb, received := s.Next()
			if amb || !received {
				t.Fatalf("request %d of %d net/http serves: ambiguous %v, received %v (scanner %+v)", k, handled, amb, received, s.s)
			}
		}
		if ambiguous {
			if amb, _ := s.Next(); !amb {
				t.Fatalf("request %d, which has both headers, not marked ambiguous (scanner %+v)", handled, s.s)
			}
		}
	})
}
