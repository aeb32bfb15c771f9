package h1client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A backend may begin a 2xx answer before it has read the body and go on
// reading it (a full-duplex server: a stream's head flushed first). That
// answer does not say the body is unwanted (RFC 9112 asks a client to
// stop only for an error response; curl and net/http go on writing):
// the write runs to its end, so the backend gets the whole request and
// the answer ends, rather than both sides waiting on each other.
func TestEarlySuccessHeadDoesNotStopTheWrite(t *testing.T) {
	body := strings.Repeat("x", 16<<20) // more than the kernel buffers hold
	forReadAlongModes(t, "", func(t *testing.T, c *Client) {
		raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"))
			n, _ := io.Copy(io.Discard, req.Body)
			got := strconv.FormatInt(n, 10)
			c.Write([]byte(strconv.FormatInt(int64(len(got)), 16) + "\r\n" + got + "\r\n0\r\n\r\n"))
		})
		// The hang guard: the old code waits here until it ends.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.RoundTrip(post(t, ctx, raw.url(), body))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); resp.StatusCode != http.StatusOK || got != "first"+strconv.Itoa(len(body)) {
			t.Fatalf("got %d %q, want the backend to have read the whole body", resp.StatusCode, got)
		}
	})
}

// A connection the client's Dial wraps (TLS here) cannot have a write
// interrupted by a deadline and then resumed: crypto/tls makes a timed-out
// write's error permanent. The write deadline that starts the read
// alongside is kept to the plain sockets; on any other connection the
// read starts with the body's write, and a body written whole gets its
// answer.
func TestBodyOverTLSDialIsWrittenWhole(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strconv.FormatInt(n, 10))
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	body := strings.Repeat("x", 16<<20)
	forReadAlongModes(t, "", func(t *testing.T, mode *Client) {
		// The mode's delay, on a client whose Dial speaks TLS.
		c := newClient(t, Options{SendIdleTimeout: time.Minute, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := tls.Dialer{Config: srv.Client().Transport.(*http.Transport).TLSClientConfig}
			return d.DialContext(ctx, network, addr)
		}})
		c.readAlongAfter = mode.readAlongAfter
		for i := range 2 {
			// A hang guard per request, and a wide one: 16 MiB through TLS
			// under -race on a loaded machine took 63 s a request (flakes9).
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			resp, err := c.RoundTrip(post(t, ctx, "http://"+addr, body))
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if got := readAll(t, resp); resp.StatusCode != http.StatusOK || got != strconv.Itoa(len(body)) {
				t.Fatalf("request %d: got %d %q", i, resp.StatusCode, got)
			}
		}
		if st := c.Stats(); st.Dials != 1 {
			t.Fatalf("%+v: want one connection, kept alive", st)
		}
	})
}

// readSignal is a connection (not a plain socket: read alongside from the
// body's first write) that says when a read first returned bytes.
type readSignal struct {
	net.Conn
	once sync.Once
	read chan struct{}
}

func (c *readSignal) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { close(c.read) })
	}
	return n, err
}

// A 2xx head read alongside a write that the request's context then ends
// (a backend that answers 200 at once and holds without reading, the
// first_byte timeout) is no answer: the exchange fails with the context's
// cause, as a write ended by the context without a read alongside does,
// not hand back a head whose body can only fail.
func TestContextEndingTheWriteAfterAnEarlyHeadFails(t *testing.T) {
	holding := make(chan struct{})
	raw := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
		<-holding
	})
	defer close(holding) // before the server's cleanup waits for its connections
	sig := &readSignal{read: make(chan struct{})}
	c := newClient(t, Options{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		sig.Conn = nc
		return sig, err
	}})
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("test: first_byte")
	go func() {
		<-sig.read // the head is in the reader's buffer
		cancel(cause)
	}()
	hang := time.AfterFunc(time.Minute, func() { cancel(errors.New("hang guard")) })
	defer hang.Stop()
	resp, err := c.RoundTrip(post(t, ctx, raw.url(), strings.Repeat("x", 16<<20)))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %d for a request whose context ended its write", resp.StatusCode)
	}
	if !errors.Is(err, cause) {
		t.Fatalf("got %v, want the context's cause", err)
	}
}
