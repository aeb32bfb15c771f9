package h1client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/socktest"
)

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
			srv.Listener = socktest.SmallReceiveBuffer{Listener: srv.Listener}
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

// A backend that takes the body slowly but steadily (a slow link, a
// backend that reads as it processes) is not stalled: nginx's
// proxy_send_timeout, which the send bound follows, counts between two
// writes that took something. The bound used to count from the start of
// each piece of up to 32 KiB, so a backend that took less than a piece
// within it (at the gateway's 60 s, under ~550 bytes a second) was cut
// with ErrSendStalled, "took none", though it read all along. Here the
// backend takes 2 KiB every 250 ms (a piece in 4 s) against a 2 s bound:
// the old code cut it at its first piece. A unix socket with a small send
// buffer makes the write follow the backend's reads (TCP's loopback
// window opens in steps of its 64 KiB segments).
func TestBodyTheBackendTakesSlowlyIsNotCut(t *testing.T) {
	body := strings.Repeat("x", 48<<10)
	for _, mode := range []struct {
		name  string
		after time.Duration
	}{{"default", readAlongAfter}, {"read along at once", readAlongAtOnce}} {
		t.Run(mode.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "backend.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			var d net.Dialer
			c := newClient(t, Options{SendIdleTimeout: 2 * time.Second,
				Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
					nc, err := d.DialContext(ctx, "unix", sock)
					if err == nil {
						nc.(*net.UnixConn).SetWriteBuffer(2 << 10)
					}
					return nc, err
				}})
			c.readAlongAfter = mode.after
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 2<<10)
				pace := time.NewTicker(250 * time.Millisecond) // the backend's pace, not a synchronisation
				defer pace.Stop()
				var got int
				for {
					n, err := io.ReadFull(r.Body, buf)
					got += n
					if err != nil {
						break
					}
					<-pace.C
				}
				io.WriteString(w, strconv.Itoa(got))
			}))
			srv.Listener.Close()
			srv.Listener = ln
			srv.Start()
			t.Cleanup(srv.Close)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // hang guard
			defer cancel()
			resp, err := c.RoundTrip(post(t, ctx, "http://backend/v1/audio", body))
			if err != nil {
				t.Fatalf("a backend taking the body all along was cut: %v", err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != strconv.Itoa(len(body)) {
				t.Fatalf("the backend read %s bytes, want %d", got, len(body))
			}
		})
	}
}
