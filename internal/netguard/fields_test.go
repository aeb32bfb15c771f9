package netguard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
)

// fieldsHead is a GET whose head carries n header fields besides Host,
// distinct names or one name repeated.
func fieldsHead(n int, distinct bool) string {
	var b strings.Builder
	b.WriteString("GET /f HTTP/1.1\r\nHost: x\r\n")
	for i := range n {
		if distinct {
			fmt.Fprintf(&b, "X-%x: v\r\n", i)
		} else {
			b.WriteString("X-A: v\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// A head of many short fields is refused before the handler holds it:
// net/http's map of 7,700 such fields was 8.5 times the head's bytes.
// MaxHeaderFields is served; one more is 431, closed, the handler never
// called; a repeated name counts once per line.
func TestTooManyHeaderFieldsIs431AndClose(t *testing.T) {
	addr, calls := serveScanned(t)
	for _, distinct := range []bool{true, false} {
		st, _, closed := exchange(t, addr, fieldsHead(MaxHeaderFields, distinct)+closeReq, 2)
		if st[0] != 200 || st[1] != 200 || !closed {
			t.Fatalf("distinct %v: %d fields: statuses %v closed %v, want served", distinct, MaxHeaderFields, st, closed)
		}
		before := calls.Load()
		st, bodies, closed := exchange(t, addr, fieldsHead(MaxHeaderFields+1, distinct)+closeReq, 1)
		if st[0] != 431 || !strings.Contains(bodies[0], `"code":"request_header_too_large"`) ||
			!strings.Contains(bodies[0], "more than 1000 header fields") || !closed {
			t.Fatalf("distinct %v: %d fields: status %v body %q closed %v, want 431 and closed", distinct, MaxHeaderFields+1, st, bodies, closed)
		}
		if calls.Load() != before {
			t.Fatalf("distinct %v: the refused request (or the one after it) reached the handler", distinct)
		}
	}
}

// Guard's own refusals carry a request id, as every answer of the
// gateway does (net/http's rewritten ones included, httperr.go).
func TestGuardRefusalsHaveRequestID(t *testing.T) {
	addr, _ := serveScanned(t)
	for _, raw := range []string{fieldsHead(MaxHeaderFields+1, true), bothReq} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound against hangs, not a timing assertion
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if id := resp.Header.Get("X-Request-Id"); resp.StatusCode < 400 || len(id) != openai.RequestIDLen {
			t.Fatalf("%.40q: status %d, X-Request-Id %q, want a refusal with a %d-character id", raw, resp.StatusCode, id, openai.RequestIDLen)
		}
	}
}

// Where no scanner counted the head (a Listener that does not scan, or no
// Listener at all), Guard counts the parsed header map instead, with the
// same limit and answer.
func TestTooManyHeaderFieldsUnscanned(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	for _, listener := range []bool{true, false} {
		var ln net.Listener
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: Guard(h), ReadHeaderTimeout: 10 * time.Second}
		if listener {
			gl := NewListener(ln, ConnLimits{Total: 64}, nil)
			srv.ConnContext, srv.ConnState, ln = gl.ConnContext, gl.ConnState, gl
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		addr := ln.Addr().String()
		if st, _, _ := exchange(t, addr, fieldsHead(MaxHeaderFields, true)+closeReq, 2); st[0] != 200 || st[1] != 200 {
			t.Fatalf("listener %v: %d fields: statuses %v, want served", listener, MaxHeaderFields, st)
		}
		st, bodies, closed := exchange(t, addr, fieldsHead(MaxHeaderFields+1, false)+closeReq, 1)
		if st[0] != 431 || !strings.Contains(bodies[0], `"code":"request_header_too_large"`) || !closed {
			t.Fatalf("listener %v: %d fields: status %v body %q closed %v, want 431 and closed", listener, MaxHeaderFields+1, st, bodies, closed)
		}
	}
}

// A request whose method is PRI is no HTTP/2 preface unless it is
// "PRI * HTTP/2.0" with no header field: net/http serves it as HTTP/1.1
// and reads the next request on the connection. The scanner lost the
// framing at any "PRI " request line, so the requests after it went
// unscanned: an ambiguous one reached the handler (served chunked), and a
// head of more than MaxHeaderFields was counted only by Guard's fallback
// over the header map. Both are now refused as on any connection.
func TestPRIRequestKeepsFraming(t *testing.T) {
	addr, calls := serveScanned(t)
	for _, pri := range []string{"PRI /p HTTP/1.1\r\nHost: x\r\n\r\n", "PRI * HTTP/2.0\r\nHost: x\r\n\r\n"} {
		before := calls.Load()
		st, bodies, closed := exchange(t, addr, pri+bothReq+clReq, 2)
		if st[0] != 200 || st[1] != 400 || !strings.Contains(bodies[1], `"code":"ambiguous_framing"`) || !closed {
			t.Fatalf("%q then an ambiguous request: statuses %v bodies %q closed %v, want 200, 400 and closed", pri, st, bodies, closed)
		}
		if n := calls.Load() - before; n != 1 {
			t.Fatalf("%q then an ambiguous request: %d handler calls, want 1 (the PRI request)", pri, n)
		}
		before = calls.Load()
		st, bodies, closed = exchange(t, addr, pri+fieldsHead(MaxHeaderFields+1, true)+closeReq, 2)
		if st[0] != 200 || st[1] != 431 || !strings.Contains(bodies[1], `"code":"request_header_too_large"`) || !closed {
			t.Fatalf("%q then %d fields: statuses %v bodies %q closed %v, want 200, 431 and closed", pri, MaxHeaderFields+1, st, bodies, closed)
		}
		if n := calls.Load() - before; n != 1 {
			t.Fatalf("%q then %d fields: %d handler calls, want 1", pri, MaxHeaderFields+1, n)
		}
	}
}
