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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveTimedBodies runs a server whose handler times every body as the
// gateway does: /read reads it whole and answers 200, any other path
// answers 401 without reading it (an unauthenticated request).
func serveTimedBodies(t *testing.T) (*ConnMetrics, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewConnMetrics(prometheus.NewRegistry())
	// Bounds far beyond the test's hang guards: nothing here may wait on them.
	l := NewListener(ln, ConnLimits{Total: 10, Linger: Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 64 << 20}}, m)
	srv := &http.Server{
		ConnContext: l.ConnContext,
		ConnState:   l.ConnState,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body TimedBody
			body.Start(w, r, BodyTimeouts{Gap: time.Hour, Total: time.Hour}, time.Now, nil)
			defer body.Restore()
			if r.URL.Path == "/read" {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
				}
				return
			}
			http.Error(w, "no key", http.StatusUnauthorized)
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return m, ln.Addr().String()
}

// An answer given before the body is read reaches a client that stalls
// its upload at once, and closes the connection, whose lingering close
// drops what the client still sends; a body read whole keeps the
// connection. net/http would discard the unread rest of a body under 256
// KiB, or of a chunked one, before writing the answer's head: under the
// body's deadline (body_read_timeout), by when the answer was usually lost.
func TestAnswerBeforeTheBodyIsNotHeldByItsUnreadRest(t *testing.T) {
	for _, framing := range []string{"Content-Length: 204800\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\n1000\r\n"} {
		name, _, _ := strings.Cut(framing, ":")
		t.Run(name, func(t *testing.T) {
			m, addr := serveTimedBodies(t)
			c := dialFrom(t, "127.0.0.1", addr)
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard: the old code answered after body_read_timeout
			br := bufio.NewReader(c)
			fmt.Fprintf(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("a body read whole: status %d, close %v", resp.StatusCode, resp.Close)
			}

			// 4 KiB of the body, then nothing more.
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s%s", framing, strings.Repeat("a", 4096))
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer while the body stalls: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
				t.Fatalf("status %d, close %v; want 401 closing the connection", resp.StatusCode, resp.Close)
			}
			waitFor(t, "the lingering close", func() bool { return testutil.ToFloat64(m.linger) == 1 })
			c.Close()
			waitFor(t, "the lingering close's end", func() bool { return lingers(m, LingerEOF) == 1 })
		})
	}
}
