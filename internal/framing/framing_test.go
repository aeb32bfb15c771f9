package framing

import (
	"bufio"
	"bytes"
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

// serve runs Guard over an echo handler on a real loopback listener and
// returns its address and how many requests reached the handler.
func serve(t *testing.T) (string, *atomic.Int32) {
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
	srv := &http.Server{Handler: Guard(h), ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &calls
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
	addr, calls := serve(t)
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

// outer is another layer's wrapper above the scanned connection, as
// netguard's listener puts its own above framing.Wrap.
type outer struct{ net.Conn }

func (o *outer) NetConn() net.Conn { return o.Conn }

type outerListener struct{ net.Listener }

func (l outerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &outer{Wrap(c)}, nil
}

// A connection scanned under another wrapper (Wrap, then the other
// layer's) is found by ConnContext through NetConn: the ambiguous request
// is refused, the one before it served.
func TestGuardFindsTheScannerUnderAnotherWrapper(t *testing.T) {
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Guard(h), ConnContext: ConnContext}
	go srv.Serve(outerListener{ln})
	t.Cleanup(func() { srv.Close() })
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
	addr, calls := serve(t)
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
	addr, calls := serve(t)
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
		whole := scanner{ambiguous: -1}
		whole.feed(data)
		split := scanner{ambiguous: -1}
		n := int(step%64) + 1
		for i := 0; i < len(data); i += n {
			split.feed(data[i:min(i+n, len(data))])
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

// BodyReceived says whether a request's body has been read whole from the
// connection: true once every byte of it (a Content-Length body, a chunked
// body to its trailer, or no body) went through the scanner, false while
// some is still on the wire, and false for a request that did not come
// through Listener and Guard. Guard tells a Framed handler the same as
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
		if a.Conn == nil || a.Conn.RemoteAddr().String() != r.RemoteAddr {
			t.Errorf("%s: Guard told of connection %v, the request came from %s", r.URL.Path, a.Conn, r.RemoteAddr)
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
	srv := &http.Server{Handler: Guard(h), ConnContext: ConnContext, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(Listener(ln))
	t.Cleanup(func() { srv.Close() })
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
		"POST / HTTP/1.1\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 1\r\n\r\nz"} {
		for _, v := range []string{"-0", "+5", "-5", "+", "", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "5\u00a0", "0x5", "1_0"} {
			f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: "+v+"\r\n\r\n"+s), []byte{9})
		}
		f.Add([]byte(s), []byte{1})
		f.Add([]byte(s), []byte{6, 30, 2})
		f.Add([]byte(s), []byte{255})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		s, o := scanner{ambiguous: -1}, oldScanner{ambiguous: -1}
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
				st                                                state
				heads, bodies, ambiguous                          int
				remain, cl                                        int64
				started, http10, hasCL, hasTE, uncounted, counted bool
			}
			ns := view{s.st, s.heads, s.bodies, s.ambiguous, s.remain, s.cl, s.started, s.http10, s.hasCL, s.hasTE, s.uncounted, s.counted}
			os := view{o.st, o.heads, o.bodies, o.ambiguous, o.remain, o.cl, o.started, o.http10, o.hasCL, o.hasTE, o.uncounted, o.counted}
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
		s := scanner{ambiguous: -1}
		for _, f := range c.feeds {
			s.feed([]byte(f))
		}
		if got := s.inRequestLine(); got != c.want {
			t.Errorf("%s: inRequestLine %v, want %v", c.name, got, c.want)
		}
	}
}
