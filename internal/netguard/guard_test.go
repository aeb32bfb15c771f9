package netguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The end-to-end checks of the framing guard: a request's bytes through a
// scanning Listener (ScanFraming), its ConnContext and Guard, on a real
// loopback server. internal/framing's own tests check the scanner alone.

// scanning serves h behind Guard on a scanning Listener over ln (ln may
// itself be a Listener, or wrap one) and returns the listener served.
func scanning(t *testing.T, ln net.Listener, h http.Handler) net.Listener {
	t.Helper()
	gl, ok := ln.(*Listener)
	if !ok {
		if o, wraps := ln.(outerListener); wraps {
			gl = o.Listener.(*Listener)
		} else {
			gl = NewListener(ln, ConnLimits{Total: 64}, nil)
			ln = gl
		}
	}
	gl.ScanFraming()
	srv := &http.Server{Handler: Guard(h), ConnContext: gl.ConnContext, ConnState: gl.ConnState, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln
}

// serveScanned runs Guard over an echo handler on a real loopback
// listener that scans the framing (ScanFraming) and returns its address
// and how many requests reached the handler.
func serveScanned(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Write([]byte("got " + string(b)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return scanning(t, ln, h).Addr().String(), &calls
}

// exchange writes raw to a new connection and reads responses until the
// server closes it (or want responses arrived and the connection stays up).
func exchange(t *testing.T, addr, raw string, want int) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound against hangs, not a timing assertion
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for len(statuses) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d responses: %v", len(statuses), err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses, bodies = append(statuses, resp.StatusCode), append(bodies, string(b))
	}
	_, err = br.ReadByte()
	return statuses, bodies, err == io.EOF
}

const (
	clReq      = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chunkedReq = "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
	bothReq    = "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	closeReq   = "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)

func TestAmbiguousFramingIs400AndClose(t *testing.T) {
	addr, calls := serveScanned(t)
	st, bodies, closed := exchange(t, addr, bothReq+clReq, 1)
	if st[0] != 400 || !strings.Contains(bodies[0], `"code":"ambiguous_framing"`) || !closed {
		t.Fatalf("status %v body %q closed %v", st, bodies, closed)
	}
	if calls.Load() != 0 {
		t.Fatal("the ambiguous request (or the one after it) reached the handler")
	}
	// The same with the headers in the other order, lower case, on HTTP/1.0
	// (where Go would ignore Transfer-Encoding and use Content-Length).
	for _, raw := range []string{
		"POST /c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
		"POST /c HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
	} {
		if st, _, closed := exchange(t, addr, raw, 1); st[0] != 400 || !closed {
			t.Fatalf("%q: status %v closed %v", raw, st, closed)
		}
	}
}

// outer is another layer's wrapper above the listener's connection.
type outer struct{ net.Conn }

func (o *outer) NetConn() net.Conn { return o.Conn }

type outerListener struct{ net.Listener }

func (l outerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &outer{c}, nil
}

// A scanned connection under another wrapper is found by ConnContext
// through NetConn: the ambiguous request is refused, the one before it
// served.
func TestGuardFindsTheScannerUnderAnotherWrapper(t *testing.T) {
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, ConnLimits{Total: 64}, nil)
	scanning(t, outerListener{ln}, h)
	st, bodies, closed := exchange(t, ln.Addr().String(), clReq+bothReq, 2)
	if st[0] != 200 || st[1] != 400 || !strings.Contains(bodies[1], `"code":"ambiguous_framing"`) || !closed {
		t.Fatalf("statuses %v bodies %q closed %v", st, bodies, closed)
	}
	if calls.Load() != 1 {
		t.Fatalf("handler calls %d, want 1", calls.Load())
	}
}

// The scanner follows Content-Length and chunked bodies (extensions,
// trailers) across a pipelined connection, so the third request is the
// one refused, and a body that looks like a head is not.
func TestFramingFollowsPipelinedRequests(t *testing.T) {
	addr, calls := serveScanned(t)
	st, bodies, closed := exchange(t, addr, clReq+chunkedReq+bothReq+clReq, 3)
	if st[0] != 200 || st[1] != 200 || st[2] != 400 || bodies[0] != "got hello" || bodies[1] != "got abcde" || !closed {
		t.Fatalf("statuses %v bodies %q closed %v", st, bodies, closed)
	}
	if calls.Load() != 2 {
		t.Fatalf("handler calls %d, want 2", calls.Load())
	}
	fake := "\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	inBody := "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(fake)) + "\r\n\r\n" + fake
	if st, _, _ := exchange(t, addr, inBody+closeReq, 2); st[0] != 200 || st[1] != 200 {
		t.Fatalf("a head-like body: statuses %v", st)
	}
	// A CONNECT, or an HTTP/1.0 request with a Transfer-Encoding net/http
	// ignores, has an empty body: what follows is the next head.
	for _, first := range []string{"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /f HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"} {
		if st, _, closed := exchange(t, addr, first+bothReq, 2); st[0] != 200 || st[1] != 400 || !closed {
			t.Fatalf("%q then an ambiguous request: statuses %v closed %v", first, st, closed)
		}
	}
	// net/http answers OPTIONS * without a handler; the count stays right.
	if st, _, closed := exchange(t, addr, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"+clReq+bothReq, 3); st[0] != 200 || st[1] != 200 || st[2] != 400 || !closed {
		t.Fatalf("after OPTIONS *: statuses %v closed %v", st, closed)
	}
}

// What net/http refuses by itself (documented in RELIABILITY.md), so the
// scanner need not: differing duplicate Content-Length, an invalid one,
// and any Transfer-Encoding but a single "chunked".
func TestGoRefusesOtherBadFraming(t *testing.T) {
	addr, calls := serveScanned(t)
	for raw, want := range map[string]int{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd":                        400,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n":                                                400,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd":                                          400,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n":                         501,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 501,
	} {
		if st, _, closed := exchange(t, addr, raw, 1); st[0] != want || !closed {
			t.Errorf("%q: status %v closed %v, want %d and close", raw, st, closed, want)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("handler calls %d, want 0", calls.Load())
	}
}

// BodyReceived says whether a request's body has been read whole from the
// connection: true once every byte of it (a Content-Length body, a chunked
// body to its trailer, or no body) went through the scanner, false while
// some is still on the wire, and false for a request that did not come
// through a scanning Listener and Guard. Guard tells a Framed handler the same as
// BodyReceived says as the handler starts.
func TestBodyReceived(t *testing.T) {
	type seen struct {
		atStart, afterRead bool
		body               string
	}
	got := make(chan seen, 8)
	proceed := make(chan struct{}, 8)
	h := framedHandler{t: t, serve: func(w http.ResponseWriter, r *http.Request, a Arrival) {
		s := seen{atStart: BodyReceived(r)}
		if a.BodyReceived != s.atStart {
			t.Errorf("%s: Guard told %v, BodyReceived says %v", r.URL.Path, a.BodyReceived, s.atStart)
		}
		if a.Memo == nil || a.Memo != ConnMemo(r.Context()) {
			t.Errorf("%s: Guard told of memo %p, the connection's is %p", r.URL.Path, a.Memo, ConnMemo(r.Context()))
		}
		if r.URL.Path == "/partial" {
			got <- s // the client sends the rest only after this
			<-proceed
		}
		b, _ := io.ReadAll(r.Body)
		s.afterRead, s.body = BodyReceived(r), string(b)
		got <- s
		w.Write([]byte("ok"))
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scanning(t, ln, h)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound against hangs, not a timing assertion
	br := bufio.NewReader(c)
	roundTrip := func(raw string) seen {
		t.Helper()
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		s := <-got
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return s
	}
	for _, raw := range []string{clReq, chunkedReq, "GET /g HTTP/1.1\r\nHost: x\r\n\r\n"} {
		if s := roundTrip(raw); !s.afterRead {
			t.Fatalf("%q: BodyReceived false after the whole body was read (%q)", raw, s.body)
		}
	}
	// A body still arriving when the handler starts.
	io.WriteString(c, "POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
	if s := <-got; s.atStart {
		t.Fatal("BodyReceived true with 5 of 10 body bytes sent")
	}
	proceed <- struct{}{}
	if s := roundTrip("world"); !s.afterRead || s.body != "helloworld" {
		t.Fatalf("after the rest arrived: %+v", s)
	}
	// The next request on the connection is counted on its own.
	if s := roundTrip(clReq); !s.afterRead {
		t.Fatal("BodyReceived false for the request after a partial one")
	}
	if r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")); BodyReceived(r) {
		t.Fatal("BodyReceived true for a request that did not come through Listener")
	}
}

// framedHandler is a Framed handler; Guard must call its ServeFramed.
type framedHandler struct {
	t     *testing.T
	serve func(w http.ResponseWriter, r *http.Request, a Arrival)
}

func (h framedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.t.Errorf("%s: Guard called ServeHTTP, not ServeFramed", r.URL.Path)
	h.serve(w, r, Arrival{BodyReceived: BodyReceived(r)})
}

func (h framedHandler) ServeFramed(w http.ResponseWriter, r *http.Request, a Arrival) {
	h.serve(w, r, a)
}

// net/http reads an obs-fold (a field line continued on the next, which
// starts with a space or a tab) as a space, also in a Content-Length:
// "Content-Length:" folded onto " 2" is a length of 2, and the request is
// served. The scanner must read it so too: had it lost the framing there,
// an ambiguous request pipelined after it would reach the handler.
func TestFramingFollowsFoldedContentLength(t *testing.T) {
	addr, calls := serveScanned(t)
	for _, first := range []string{
		"POST /g HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 2\r\n\r\nab",
		"POST /g HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\t \t2\r\nX: y\r\n\r\nab",
		"POST /g HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length:\r\n 2\r\n\r\nab",
		"POST /g HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n \r\n\r\nab",
		"POST /g HTTP/1.1\nHost: x\nContent-Length:\n 2\n\nab",
	} {
		calls.Store(0)
		st, bodies, closed := exchange(t, addr, first+bothReq+clReq, 2)
		if st[0] != 200 || bodies[0] != "got ab" || st[1] != 400 || !strings.Contains(bodies[1], `"code":"ambiguous_framing"`) || !closed {
			t.Errorf("%q then an ambiguous request: statuses %v bodies %q closed %v", first, st, bodies, closed)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("%q then an ambiguous request: handler calls %d, want 1", first, n)
		}
	}
}

// After a POST net/http skips up to four CR or LF bytes before the next
// request line (RFC 9112 2.2's tolerance), so "\rOPTIONS * HTTP/1.1" is
// an OPTIONS * it answers itself, with no handler call: the scanner must
// not count it, else every later request of the connection is matched
// with the head before its own, and an ambiguous one passes.
func TestFramingSkipsCRBeforeRequestLine(t *testing.T) {
	addr, calls := serveScanned(t)
	for _, gap := range []string{"\r", "\r\r", "\r\r\n", "\r\r\r\n"} {
		calls.Store(0)
		raw := clReq + gap + "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + bothReq + clReq
		st, bodies, closed := exchange(t, addr, raw, 3)
		if st[0] != 200 || st[1] != 200 || st[2] != 400 || !strings.Contains(bodies[2], `"code":"ambiguous_framing"`) || !closed {
			t.Errorf("%q before OPTIONS *, then an ambiguous request: statuses %v bodies %q closed %v", gap, st, bodies, closed)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("%q before OPTIONS *, then an ambiguous request: handler calls %d, want 1", gap, n)
		}
	}
}

// server.max_header_bytes may be up to 16 MiB, and net/http then serves a
// head holding a header line of a few MiB: the scanner must follow it too
// (it kept lines up to 1 MiB and lost the framing past that), else an
// ambiguous request pipelined after it reaches the handler.
func TestFramingFollowsLongHeaderLines(t *testing.T) {
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := NewListener(raw, ConnLimits{Total: 64}, nil)
	gl.ScanFraming()
	srv := &http.Server{Handler: Guard(h), ConnContext: gl.ConnContext, ConnState: gl.ConnState, MaxHeaderBytes: 4 << 20}
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close() })
	first := "GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"
	st, bodies, closed := exchange(t, gl.Addr().String(), first+bothReq, 2)
	if st[0] != 200 || st[1] != 400 || !strings.Contains(bodies[1], `"code":"ambiguous_framing"`) || !closed {
		t.Errorf("a 2 MiB header line, then an ambiguous request: statuses %v closed %v", st, closed)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler calls %d, want 1", n)
	}
}
