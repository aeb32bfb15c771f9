package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A backend may answer before it has read the request body — a body
// limit's 413, an auth proxy's 401 — and close the connection over the
// rest, which the client's write then meets as a reset. The answer it
// sent is the truth about the request; the broken write is not.
func TestAnswerBeforeTheBodyWasReadIsReturned(t *testing.T) {
	const answer = `{"error":{"message":"too big","type":"invalid_request_error","code":"too_big"}}`
	body := strings.Repeat("x", 24<<20) // more than the kernel buffers hold (loopback: ~10 MiB at most)
	cases := map[string]string{}
	// A raw server: the head read, the 413 sent, the socket reset at once.
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(answer)) + "\r\n\r\n" + answer))
		c.(*net.TCPConn).SetLinger(0)
	})
	cases["reset"] = raw.url()
	// net/http's server: the handler answers without reading; the server
	// closes over the unread body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	cases["net/http"] = srv.URL
	for name, url := range cases {
		forReadAlongModes(t, name, func(t *testing.T, c *Client) {
			resp, err := c.RoundTrip(post(t, context.Background(), url, body))
			if err != nil {
				t.Fatalf("the backend's answer lost to the broken write: %v", err)
			}
			if got := readAll(t, resp); resp.StatusCode != http.StatusRequestEntityTooLarge || got != answer {
				t.Fatalf("got %d %q", resp.StatusCode, got)
			}
			if st := c.Stats(); st.Idle != 0 {
				t.Fatalf("a connection whose request did not leave whole went back to the pool: %+v", st)
			}
		})
	}
}

// failingBody gives size bytes of its announced length, then err.
type failingBody struct {
	size int
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if b.size == 0 {
		return 0, b.err
	}
	n := min(len(p), b.size)
	clear(p[:n])
	b.size -= n
	return n, nil
}

// A body that fails at its source (the client gone mid-upload) is not a
// broken connection: the server still waits for the rest and sends
// nothing, so the exchange must fail at once with the body's error, not
// wait for an answer that only the first_byte timeout would end.
func TestBodySourceFailureIsNotAnEarlyAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // waits for the announced length
	}))
	t.Cleanup(srv.Close)
	bodyErr := errors.New("test: the client went away")
	forReadAlongModes(t, "", func(t *testing.T, c *Client) {
		// The hang guard: the old code waits here until it ends.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, &failingBody{size: 1 << 20, err: bodyErr})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 4 << 20
		resp, err := c.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatal("a request whose body failed got an answer")
		}
		if ctx.Err() != nil || !errors.Is(err, bodyErr) {
			t.Fatalf("got %v (context: %v), want the body's error at once", err, ctx.Err())
		}
	})
}

// The early read after a failed write may find bytes that are no final
// answer: an interim 100 Continue, or a head cut off by the reset. The
// request still did not leave whole, and Unanswered must say so as it did
// before the early read (the proxy retries such a request elsewhere and
// counts no failure), not leave it a plain failed exchange.
func TestEarlyReadWithoutFinalAnswerStaysUnsent(t *testing.T) {
	for name, sent := range map[string]string{
		"interim 100": "HTTP/1.1 100 Continue\r\n\r\n",
		"cut head":    "HTTP/1.1 413 Payload Too La",
	} {
		forReadAlongModes(t, name, func(t *testing.T, c *Client) {
			requireUnsentOnPooled(t, c, func(c net.Conn, r *bufio.Reader) {
				if _, err := http.ReadRequest(r); err == nil {
					c.Write([]byte(sent))
				}
			})
		})
	}
}

// requireUnsentOnPooled sends a small request, answered whole so that its
// connection is pooled, then a 24 MiB one (more than the kernel buffers
// hold), which reuses that connection and which second meets before the
// server resets the connection; the second request must fail, as unsent
// on a pooled connection (Unanswered: stale and unsent; the proxy retries
// it elsewhere and counts no failure).
func requireUnsentOnPooled(t *testing.T, c *Client, second func(c net.Conn, r *bufio.Reader)) {
	t.Helper()
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := readRequest(r); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		second(c, r)
		c.(*net.TCPConn).SetLinger(0)
	})
	resp, err := c.RoundTrip(post(t, context.Background(), raw.url(), "first"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	resp, err = c.RoundTrip(post(t, context.Background(), raw.url(), strings.Repeat("x", 24<<20)))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %d for a request cut off with no answer to it", resp.StatusCode)
	}
	if stale, unsent := Unanswered(err); !stale || !unsent {
		t.Fatalf("Unanswered(%v) = stale %v, unsent %v; want both: the request did not leave whole", err, stale, unsent)
	}
}

// An early answer that is a 200 with a body (a server that answered
// without reading the rest) is read whole, and its connection is closed,
// not pooled, whatever the answer's own Connection header says.
func TestEarlySuccessBodyIsReadAndConnectionClosed(t *testing.T) {
	body := strings.Repeat("x", 24<<20)
	const answer = "done early"
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: " + strconv.Itoa(len(answer)) + "\r\n\r\n" + answer))
		c.(*net.TCPConn).SetLinger(0)
	})
	forReadAlongModes(t, "", func(t *testing.T, c *Client) {
		resp, err := c.RoundTrip(post(t, context.Background(), raw.url(), body))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); resp.StatusCode != http.StatusOK || got != answer || !resp.Close {
			t.Fatalf("got %d %q close %v", resp.StatusCode, got, resp.Close)
		}
		if st := c.Stats(); st.Idle != 0 {
			t.Fatalf("the connection of a request that did not leave whole was pooled: %+v", st)
		}
	})
}

// A backend closing an idle keep-alive connection may first send an
// unsolicited 408 Request Timeout. Sent just after the pool's liveness
// check, it is in the receive queue when the next request's write fails
// on the closed connection; it answers no request the server saw, and
// must not be returned as this one's answer (net/http ignores a 408 on
// an idle connection). The request stays unsent, as a write failure on a
// pooled connection always was. The server here sends the 408 when the
// request begins to arrive, which the client cannot tell from the race.
func TestIdleCloses408IsNotTheEarlyAnswer(t *testing.T) {
	body := strings.Repeat("x", 24<<20) // more than the kernel buffers hold
	forReadAlongModes(t, "", func(t *testing.T, c *Client) {
		requireUnsentOnPooled(t, c, func(c net.Conn, r *bufio.Reader) {
			if _, err := r.Peek(1); err == nil { // the next request's first byte
				c.Write([]byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			}
		})
		// On a fresh connection a 408 after a failed write is the server's
		// answer to this request (it saw it begin): returned as such.
		fresh := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
			if _, err := http.ReadRequest(r); err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			c.(*net.TCPConn).SetLinger(0)
		})
		resp, err := c.RoundTrip(post(t, context.Background(), fresh.url(), body))
		if err != nil {
			t.Fatalf("fresh connection: %v; want the 408", err)
		}
		if readAll(t, resp); resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("fresh connection: got %d, want 408", resp.StatusCode)
		}
	})
}

// forReadAlongModes runs test as a subtest (name, then the mode's) with a
// client of its own in each mode: the response read alongside the body's
// write from its first byte (a goroutine every time), and the client's
// default (only once the write has run for readAlongAfter, which a
// backend that reads or resets at once does not reach). The client has
// the gateway's send bound, so every body written is written under it.
func forReadAlongModes(t *testing.T, name string, test func(t *testing.T, c *Client)) {
	for _, mode := range []struct {
		name  string
		after time.Duration
	}{{"default", readAlongAfter}, {"read along at once", readAlongAtOnce}} {
		t.Run(strings.TrimPrefix(name+" "+mode.name, " "), func(t *testing.T) {
			c := newClient(t, Options{SendIdleTimeout: time.Minute})
			c.readAlongAfter = mode.after
			test(t, c)
		})
	}
}
