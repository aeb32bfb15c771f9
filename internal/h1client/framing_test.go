package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// answerWith is a raw server answering the requests on a connection with
// answers[i] in turn; then it waits for the client to close, or with
// hangUp closes at once (an answer delimited by the connection's end).
func answerWith(t *testing.T, hangUp bool, answers ...string) *rawServer {
	return newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for _, a := range answers {
			if _, err := readRequest(r); err != nil {
				return
			}
			io.WriteString(c, a)
		}
		if !hangUp {
			io.Copy(io.Discard, r)
		}
	})
}

func TestMalformedResponsesFail(t *testing.T) {
	for name, raw := range map[string]string{
		"both framings":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"gzip coding":         "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"chunked in HTTP/1.0": "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"negative length":     "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"differing lengths":   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"folded line":         "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\n\r\n",
		"no colon":            "HTTP/1.1 200 OK\r\nX-A\r\n\r\n",
		"space before colon":  "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
		"bare LF":             "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/2 status line":  "HTTP/2 200 OK\r\n\r\n",
		"short code":          "HTTP/1.1 20 OK\r\n\r\n",
		"upgrade":             "HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"control in value":    "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
		"line past buffer":    "HTTP/1.1 200 OK\r\nX-A: " + strings.Repeat("a", 40<<10) + "\r\n\r\n",
		"too many 1xx":        strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 7) + "HTTP/1.1 200 OK\r\n\r\n",
	} {
		srv := answerWith(t, true, raw)
		c := newClient(t, Options{})
		resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
		if !errors.Is(err, ErrMalformed) || resp != nil {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
		if st := c.Stats(); st.Idle != 0 {
			t.Errorf("%s: the connection was kept", name)
		}
	}
}

func TestBodyFraming(t *testing.T) {
	for _, tc := range []struct {
		name, method, raw, body string
		length                  int64
		kept                    bool // the connection goes back to the pool
	}{
		{"content length", "POST", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "abc", 3, true},
		{"chunked with extension and trailer", "POST", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n", "abc0123456789", -1, true},
		{"until close", "POST", "HTTP/1.1 200 OK\r\n\r\nall of it", "all of it", -1, false},
		{"HTTP/1.0", "POST", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nab", "ab", 2, false},
		{"HTTP/1.0 keep-alive", "POST", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nab", "ab", 2, true},
		{"connection close", "POST", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 2\r\n\r\nab", "ab", 2, false},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "", 99, true},
		{"204", "POST", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "", 0, true},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "", 0, true},
		{"1xx skipped", "POST", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", "z", 1, true},
		{"repeated equal lengths", "POST", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nz", "z", 1, true},
	} {
		srv := answerWith(t, !tc.kept, tc.raw)
		c := newClient(t, Options{})
		req, _ := http.NewRequest(tc.method, srv.url(), nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if b := readAll(t, resp); b != tc.body || resp.ContentLength != tc.length || resp.Close == tc.kept {
			t.Errorf("%s: body %q length %d close %v", tc.name, b, resp.ContentLength, resp.Close)
		}
		if st := c.Stats(); (st.Idle == 1) != tc.kept {
			t.Errorf("%s: idle %d, kept %v", tc.name, st.Idle, tc.kept)
		}
	}
}

func TestTruncatedBodiesFail(t *testing.T) {
	for name, raw := range map[string]string{
		"short content": "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"cut chunk":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"no last chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
		"bad chunk end": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
		"bad size":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
	} {
		srv := answerWith(t, true, raw)
		c := newClient(t, Options{})
		resp, err := c.RoundTrip(get(t, context.Background(), srv.url()))
		if err != nil {
			t.Errorf("%s: head: %v", name, err)
			continue
		}
		_, err = io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: body err %v", name, err)
		}
		resp.Body.Close()
		if c.Stats().Idle != 0 {
			t.Errorf("%s: connection kept", name)
		}
	}
}

// A pooled connection the server closed while idle is noticed before the
// request is written: even a POST (never replayed) succeeds on a new one.
func TestIdleConnectionClosedByServer(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := newRawServer(t, func(i int, c net.Conn, r *bufio.Reader) {
		if _, err := readRequest(r); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if i == 0 {
			c.Close() // an idle timeout on the server's side, no Connection: close
			closed <- struct{}{}
		}
	})
	c := newClient(t, Options{})
	resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	<-closed
	resp, err = c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
	if err != nil {
		t.Fatalf("POST after the server closed the idle connection: %v", err)
	}
	readAll(t, resp)
	if st := c.Stats(); st.Dials != 2 || st.Reuses != 0 {
		t.Fatalf("stats %+v: want 2 dials, the closed connection not used", st)
	}
}

// A pooled connection that dies after the request left (the server read
// it and closed without a byte): a GET is sent once more on a new
// connection, exactly once; a POST is not replayed and fails.
func TestStaleConnectionRetry(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		seen := make(chan int, 8)
		srv := newRawServer(t, func(i int, c net.Conn, r *bufio.Reader) {
			for n := 0; ; n++ {
				if _, err := readRequest(r); err != nil {
					return
				}
				seen <- i
				if i == 0 && n == 1 { // the second request on the first connection: dropped unanswered
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		c := newClient(t, Options{})
		send := func() (*http.Response, error) {
			req, _ := http.NewRequest(method, srv.url(), strings.NewReader("{}"))
			return c.RoundTrip(req)
		}
		resp, err := send()
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		resp, err = send()
		switch method {
		case "GET":
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			readAll(t, resp)
			if a, b, cnt := <-seen, <-seen, <-seen; a != 0 || b != 0 || cnt != 1 || len(seen) != 0 {
				t.Fatalf("GET: connections %d %d %d (+%d more), want 0 0 1", a, b, cnt, len(seen))
			}
		case "POST":
			if err == nil || errors.Is(err, ErrMalformed) {
				t.Fatalf("POST on a connection that died: err %v, want an I/O error", err)
			}
			if a, b := <-seen, <-seen; a != 0 || b != 0 || len(seen) != 0 || c.Stats().Dials != 1 {
				t.Fatalf("POST was replayed: %d %d, dials %d", a, b, c.Stats().Dials)
			}
		}
	}
}

func TestIdlePoolBoundsAndExpiry(t *testing.T) {
	hold := make(chan struct{})
	arrived := make(chan struct{}, 5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-hold
		}
	}))
	defer srv.Close()
	now := time.Unix(1000, 0)
	c := newClient(t, Options{MaxIdlePerHost: 2, IdleTimeout: time.Minute, Now: func() time.Time { return now }})
	done := make(chan error, 5)
	for range 5 {
		go func() {
			resp, err := c.RoundTrip(get(t, context.Background(), srv.URL+"/hold"))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
	}
	for range 5 {
		<-arrived
	}
	close(hold)
	for range 5 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Idle != 2 || st.Dials != 5 {
		t.Fatalf("stats %+v: want 2 idle of 5 dialled", st)
	}
	now = now.Add(time.Minute) // both idle connections expire
	resp, err := c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if st := c.Stats(); st.Dials != 6 || st.Idle != 1 {
		t.Fatalf("after expiry: %+v, want a 6th dial and 1 idle", st)
	}
}

func TestHTTPSGoesToFallback(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := newClient(t, Options{Fallback: srv.Client().Transport})
	resp, err := c.RoundTrip(get(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); b != "HTTP/2.0" {
		t.Fatalf("https backend spoke %q, want HTTP/2.0 through the fallback", b)
	}
	if _, err := newClient(t, Options{}).RoundTrip(get(t, context.Background(), srv.URL)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("without a fallback: %v", err)
	}
}

// Repeated equal Content-Length values are accepted (RFC 9112 §6.3 lets a
// recipient take them as one) and come out as one, as net/http's
// transport does: a caller that copies the header on (the gateway relays
// the backend's head) must not send a duplicate that strict clients
// (llhttp, Node's parser) refuse.
func TestRepeatedContentLengthIsOne(t *testing.T) {
	srv := answerWith(t, false, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nz")
	c := newClient(t, Options{})
	resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); b != "z" || len(resp.Header["Content-Length"]) != 1 {
		t.Fatalf("body %q, Content-Length %q; want one value", b, resp.Header["Content-Length"])
	}
}
