package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A backend may answer before it has read the body and then hold the
// connection open, neither reading the rest nor closing. The client's
// write blocks once the kernel buffers are full; the answer waiting in the
// receive queue is the request's outcome, and it must be returned while
// the backend still holds, read alongside the write (net/http's transport
// reads the response on its own goroutine), not after the write that
// never ends (the request's first_byte timeout, 120 s in the gateway).
// The connection is then reset, not closed: the kernel would otherwise go
// on offering the body's unsent rest to a backend that does not read it.
func TestEarlyAnswerOnAHeldConnectionIsReturned(t *testing.T) {
	const answer = `{"error":{"message":"too big","type":"invalid_request_error","code":"too_big"}}`
	// The backend's receive buffer is fixed small, so the kernel buffers
	// hold a few MiB at most: the 16 MiB body cannot be written whole.
	body := strings.Repeat("x", 16<<20)
	forReadAlongModes(t, "", func(t *testing.T, c *Client) {
		holding := make(chan struct{})
		release := sync.OnceFunc(func() { close(holding) })
		defer release() // before the server's cleanup waits for its connections
		rest := make(chan error, 1)
		raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
			c.(*net.TCPConn).SetReadBuffer(64 << 10)
			if _, err := io.ReadFull(r, make([]byte, 64<<10)); err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: " +
				strconv.Itoa(len(answer)) + "\r\n\r\n" + answer))
			<-holding // neither reads nor closes until the test has its answer
			_, err := io.Copy(io.Discard, r)
			rest <- err
		})
		// The hang guard: the old code waits here until it ends.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.RoundTrip(post(t, ctx, raw.url(), body))
		if err != nil {
			t.Fatalf("the answer of a backend holding the connection was not read: %v", err)
		}
		if got := readAll(t, resp); resp.StatusCode != http.StatusRequestEntityTooLarge || got != answer || !resp.Close {
			t.Fatalf("got %d %q close %v", resp.StatusCode, got, resp.Close)
		}
		if st := c.Stats(); st.Idle != 0 || st.Open != 0 {
			t.Fatalf("the connection of a request that did not leave whole was kept: %+v", st)
		}
		release()
		if err := <-rest; !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the backend read the rest of the body to %v, want a reset: the unsent rest dropped", err)
		}
	})
}

// A backend may send an interim 100 Continue unasked, before it reads the
// body, and answer once it has read it all. The read alongside the write
// passes over the 100 and lets the write go on; the request left whole,
// so its connection is pooled, and the next request on it (no write
// deadline left behind) is answered.
func TestInterimAnswerDoesNotStopTheWrite(t *testing.T) {
	body := strings.Repeat("x", 16<<20)
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
		for {
			req, err := readRequest(r)
			if err != nil {
				return
			}
			n := strconv.FormatInt(req.ContentLength, 10)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(n)) + "\r\n\r\n" + n))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newClient(t, Options{})
	c.readAlongAfter = readAlongAtOnce
	for i, b := range []string{body, body} {
		resp, err := c.RoundTrip(post(t, ctx, raw.url(), b))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); resp.StatusCode != http.StatusOK || got != strconv.Itoa(len(b)) {
			t.Fatalf("request %d: got %d %q", i, resp.StatusCode, got)
		}
	}
	if st := c.Stats(); st.Dials != 1 || st.Reuses != 1 || st.Idle != 1 {
		t.Fatalf("the connection of a request that left whole was not reused: %+v", st)
	}
}
