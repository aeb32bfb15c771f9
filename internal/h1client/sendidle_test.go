package h1client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smallReceiveBuffer accepts connections with a 64 KiB kernel receive
// buffer, so that a backend that stops reading fills the kernel buffers
// with a few MiB of a body at most.
type smallReceiveBuffer struct{ net.Listener }

func (l smallReceiveBuffer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
	}
	return c, err
}

// A backend that answers a 2xx head before it has read the body does not
// ask for the write to stop (a full-duplex server reads on), so the client
// writes on; if it then reads nothing more and sends nothing, the write
// blocks for good, and so does one to a backend that hangs without
// reading or answering. Either held the exchange until the request's
// context ended (the gateway's first_byte timeout, 120 s). A write the
// backend takes nothing of for SendIdleTimeout fails with ErrSendStalled
// (nginx's proxy_send_timeout), and the connection is reset, not kept:
// the kernel would otherwise go on offering the unsent rest.
func TestBodyTheBackendStopsTakingFailsAtTheSendBound(t *testing.T) {
	body := strings.Repeat("x", 16<<20) // more than the kernel buffers hold
	for name, head := range map[string]bool{"after a 200 head": true, "with no answer": false} {
		forReadAlongModes(t, name, func(t *testing.T, c *Client) {
			c.opt.SendIdleTimeout = 100 * time.Millisecond
			holding := make(chan struct{})
			release := sync.OnceFunc(func() { close(holding) })
			rest := make(chan error, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if head {
					rc := http.NewResponseController(w)
					rc.EnableFullDuplex() // the 200 goes out with the body unread
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(http.StatusOK)
					rc.Flush()
				}
				<-holding // reads nothing, sends nothing, until the test has its outcome
				_, err := io.Copy(io.Discard, r.Body)
				rest <- err
			}))
			srv.Listener = smallReceiveBuffer{srv.Listener}
			srv.Start()
			t.Cleanup(srv.Close)
			defer release() // before the server's Close waits for the handler
			// The hang guard: the old code waits here until it ends.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := c.RoundTrip(post(t, ctx, srv.URL, body))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %d for a request whose body the backend stopped taking", resp.StatusCode)
			}
			if !errors.Is(err, ErrSendStalled) || ctx.Err() != nil {
				t.Fatalf("got %v (context: %v), want ErrSendStalled at the send bound", err, ctx.Err())
			}
			if st := c.Stats(); st.Idle != 0 || st.Open != 0 {
				t.Fatalf("the connection of a stalled send was kept: %+v", st)
			}
			release()
			if err := <-rest; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the backend read the rest of the body to %v, want a reset: the unsent rest dropped", err)
			}
		})
	}
}
