package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestRequestArrivesAsNetHTTPWouldSendIt(t *testing.T) {
	type seen struct {
		method, uri, host, ua, ct, body string
		length                          int64
		te                              []string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.Header.Get("Content-Type"), string(b), r.ContentLength, r.TransferEncoding}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	c := newClient(t, Options{})
	req := post(t, context.Background(), srv.URL+"/v1/chat?x=1", `{"a":1}`)
	req.Host = "backend.example"
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); b != "ok" || resp.StatusCode != 200 || resp.Status != "200 OK" || resp.ContentLength != 2 {
		t.Fatalf("response %q %d %q %d", b, resp.StatusCode, resp.Status, resp.ContentLength)
	}
	want := seen{"POST", "/v1/chat?x=1", "backend.example", "Go-http-client/1.1", "application/json", `{"a":1}`, 7, nil}
	if s := <-got; fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("server saw %+v, want %+v", s, want)
	}

	// A body of unknown length goes chunked; one past the write buffer
	// streams after the head.
	for _, tc := range []struct {
		name   string
		body   io.Reader
		length int64
		te     []string
	}{
		{"unknown length", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")), -1, []string{"chunked"}},
		{"past the write buffer", strings.NewReader(strings.Repeat("z", 100<<10)), 100 << 10, nil},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, io.NopCloser(tc.body))
		req.ContentLength = tc.length
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		readAll(t, resp)
		s := <-got
		if fmt.Sprint(s.te) != fmt.Sprint(tc.te) || (tc.length > 0 && int64(len(s.body)) != tc.length) || (tc.length < 0 && s.body != "abcd") {
			t.Fatalf("%s: server saw length %d te %v body of %d bytes", tc.name, s.length, s.te, len(s.body))
		}
	}
}

func TestInvalidRequestFieldsAreRefused(t *testing.T) {
	c := newClient(t, Options{})
	for _, h := range []http.Header{{"X-A": {"v\r\nInjected: 1"}}, {"Bad Name": {"v"}}} {
		req := post(t, context.Background(), "http://127.0.0.1:1/", "{}")
		req.Header = h
		if _, err := c.RoundTrip(req); !errors.Is(err, errHeaderField) {
			t.Fatalf("%v: err %v, want errHeaderField", h, err)
		}
	}
	req := post(t, context.Background(), "http://127.0.0.1:1/", "{}")
	req.ContentLength = 5 // says 5, has 2
	if _, err := c.RoundTrip(req); !errors.Is(err, errBodyLength) {
		t.Fatalf("short body: err %v, want errBodyLength", err)
	}
}

func TestKeepAliveConnectionIsReused(t *testing.T) {
	var mu sync.Mutex
	opened := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, Options{})
	for i := range 10 {
		resp, err := c.RoundTrip(post(t, context.Background(), srv.URL, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, resp); b != fmt.Sprint(i) {
			t.Fatalf("answer %d: %q", i, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if st := c.Stats(); opened != 1 || st.Dials != 1 || st.Reuses != 9 || st.Idle != 1 {
		t.Fatalf("server saw %d connections; stats %+v; want 1 dial, 9 reuses, 1 idle", opened, st)
	}
}

func TestEventStreamChunksArriveAsSent(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-next // the client has read this event before the next is sent
		}
	}))
	defer srv.Close()
	c := newClient(t, Options{})
	resp, err := c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 || fmt.Sprint(resp.TransferEncoding) != "[chunked]" || resp.Header.Get("Transfer-Encoding") != "" {
		t.Fatalf("framing: length %d, coding %v, header %q", resp.ContentLength, resp.TransferEncoding, resp.Header.Get("Transfer-Encoding"))
	}
	buf := make([]byte, 4096)
	for i := range 3 {
		n, err := resp.Body.Read(buf)
		if want := fmt.Sprintf("data: %d\n\n", i); string(buf[:n]) != want || err != nil {
			t.Fatalf("read %d: %q, %v; want %q at once", i, buf[:n], err, want)
		}
		next <- struct{}{}
	}
	if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("end: %d, %v", n, err)
	}
	resp.Body.Close()
	if st := c.Stats(); st.Idle != 1 {
		t.Fatalf("after a clean end the connection is idle: %+v", st)
	}
}

func TestEarlyCloseDropsTheConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 1<<20)))
	}))
	defer srv.Close()
	c := newClient(t, Options{})
	resp, err := c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(buf); !errors.Is(err, errBodyClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if st := c.Stats(); st.Idle != 0 {
		t.Fatalf("a half-read connection went back to the pool: %+v", st)
	}
	resp, err = c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if len(readAll(t, resp)) != 1<<20 || c.Stats().Dials != 2 {
		t.Fatalf("second request: stats %+v", c.Stats())
	}
}

func TestContextEndUnblocksHeadAndBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	asked := make(chan int, 2)
	srv := newRawServer(t, func(i int, conn net.Conn, r *bufio.Reader) {
		if _, err := readRequest(r); err != nil {
			return
		}
		asked <- i
		if i == 1 { // the body case: a first event, then nothing
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n")
		}
		<-release
	})
	c := newClient(t, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(post(t, ctx, srv.url(), "{}"))
		done <- err
	}()
	<-asked // the request is written; the client waits for the head
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("head: err %v, want context.Canceled", err)
	}

	// The body's read fails with the context's cause, as net/http's does
	// (the gateway tells a first-token cut from a client that left by it).
	cut := errors.New("first token too late")
	ctx, cancelCause := context.WithCancelCause(context.Background())
	resp, err := c.RoundTrip(post(t, ctx, srv.url(), "{}"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := resp.Body.Read(buf); string(buf[:n]) != "data: " || err != nil {
		t.Fatalf("first event: %q %v", buf[:n], err)
	}
	go cancelCause(cut)
	if _, err := resp.Body.Read(buf); !errors.Is(err, cut) { // blocked until the cancel closes the connection
		t.Fatalf("body: err %v, want the cause", err)
	}
	resp.Body.Close()
	if st := c.Stats(); st.Idle != 0 {
		t.Fatalf("a cancelled connection went back to the pool: %+v", st)
	}
}

// Connections past the idle bounds are closed when their response ends,
// and counted: per host (MaxIdlePerHost) and in all (MaxIdle).
func TestIdlePoolPastItsBoundClosesAndCounts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	other := httptest.NewServer(srv.Config.Handler)
	defer other.Close()
	c := newClient(t, Options{MaxIdlePerHost: 2, MaxIdle: 3})
	// Six responses held open at once take six connections: their bodies
	// are read only after every head has arrived.
	var open []*http.Response
	for _, u := range []string{srv.URL, srv.URL, srv.URL, srv.URL, other.URL, other.URL} {
		resp, err := c.RoundTrip(get(t, context.Background(), u))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, resp)
	}
	for _, resp := range open {
		if b := readAll(t, resp); b != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	// srv: 2 kept, 2 past MaxIdlePerHost; other: 1 kept, 1 past MaxIdle.
	if st := c.Stats(); st.Dials != 6 || st.Idle != 3 || st.PoolFull != 3 || st.MaxIdle != 3 {
		t.Fatalf("stats %+v; want 6 dials, 3 idle, 3 closed for a full pool, MaxIdle 3", st)
	}
}

// A known-length body is probed for one byte past its length (into the
// message's spare byte, appendBody): a longer body is refused before
// anything is sent, and bodies exactly their length go whole, one after
// another on one reused connection, the spare byte never sent.
func TestBodyPastItsLengthIsRefusedExactOnesReuse(t *testing.T) {
	bodies := make(chan string, 4)
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			bodies <- string(b)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	c := newClient(t, Options{})
	for _, body := range []string{"abc", "defg"} {
		req, _ := http.NewRequest(http.MethodPost, srv.url(), strings.NewReader(body))
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if got := <-bodies; got != body {
			t.Fatalf("server saw %q, want %q", got, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.url(), strings.NewReader("abcde"))
	req.ContentLength = 2 // says 2, has 5
	resp, err := c.RoundTrip(req)
	if err == nil {
		resp.Body.Close() // the connection closed, so the server's reader ends
	}
	if !errors.Is(err, errBodyLength) {
		t.Fatalf("long body: err %v, want errBodyLength", err)
	}
	if n := srv.conns.Load(); n != 1 || len(bodies) != 0 {
		t.Fatalf("%d connections, %d more requests seen; want 1 and none", n, len(bodies))
	}
}
