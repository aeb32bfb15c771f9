package netguard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveRefusals runs a server whose handler times every body as the
// gateway does, with d bounding the read of an unread rest: /read reads
// the body whole and answers 200; any other path answers 401 of a
// declared length without reading it (openai.WriteError declares it);
// /plain answers with http.Error, of no declared length. accepted counts
// the connections the server took.
func serveRefusals(t *testing.T, d Discard) (m *ConnMetrics, addr string, accepted *atomic.Int64) {
	t.Helper()
	m, addr, accepted, _ = serveRefusalsSrv(t, d)
	return m, addr, accepted
}

// serveRefusalsSrv is serveRefusals, also handing back the server.
func serveRefusalsSrv(t *testing.T, d Discard) (m *ConnMetrics, addr string, accepted *atomic.Int64, srv *http.Server) {
	t.Helper()
	// Lingering bounds far beyond the test's hang guards: the client's
	// close ends a lingering close.
	return serveRefusalsLinger(t, d, Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 64 << 20})
}

// serveRefusalsLinger is serveRefusalsSrv with the listener's lingering
// bounds lim.
func serveRefusalsLinger(t *testing.T, d Discard, lim Linger) (m *ConnMetrics, addr string, accepted *atomic.Int64, srv *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m = NewConnMetrics(prometheus.NewRegistry())
	l := NewListener(ln, ConnLimits{Total: 1000, Linger: lim}, m)
	accepted = new(atomic.Int64)
	srv = &http.Server{
		ConnContext: l.ConnContext,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
			l.ConnState(c, s)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/nohijack/") {
				w = noHijack{w}
			}
			var body TimedBody
			body.Start(w, r, BodyTimeouts{Gap: time.Hour, Total: time.Hour, Discard: d}, time.Now, nil)
			defer body.Restore()
			switch r.URL.Path {
			case "/read":
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
				}
			case "/plain":
				http.Error(w, "no key", http.StatusUnauthorized)
			default:
				const answer = `{"error":{"message":"no key"}}`
				w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, answer)
			}
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return m, ln.Addr().String(), accepted, srv
}

// readAnswer reads one answer from br and checks its status.
func readAnswer(t *testing.T, br *bufio.Reader, status int) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	return resp
}

// The framings of a 10,000-byte body: its head and first 4 KiB, then the rest.
var refusedBodies = []struct{ name, head, rest string }{
	{"content-length", "Content-Length: 10000\r\n\r\n" + strings.Repeat("a", 4096), strings.Repeat("a", 10000-4096)},
	{"chunked", "Transfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("a", 4096),
		"\r\n1710\r\n" + strings.Repeat("a", 10000-4096) + "\r\n0\r\n\r\n"},
}

// An answer given before the body was read (a 401) reaches the client
// at once, while its upload is still under way, and when the rest of the
// body follows within the bounds the connection serves the next request,
// as nginx keeps it. guardbody's answer closed the connection: every
// refusal of a body not yet in cost the client a new connection.
func TestRefusalKeepsTheConnectionWhenTheRestArrives(t *testing.T) {
	for _, b := range refusedBodies {
		t.Run(b.name, func(t *testing.T) {
			// Bounds far beyond the hang guard: nothing here may wait on them.
			_, addr, accepted := serveRefusals(t, Discard{Gap: time.Hour, Total: time.Hour})
			c := dialFrom(t, "127.0.0.1", addr)
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
			br := bufio.NewReader(c)
			for i := range 3 {
				fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", b.head)
				// The answer comes before the rest is sent.
				if resp := readAnswer(t, br, http.StatusUnauthorized); resp.Close {
					t.Fatalf("refusal %d closes the connection", i)
				}
				io.WriteString(c, b.rest)
			}
			fmt.Fprintf(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
			if resp := readAnswer(t, br, http.StatusOK); resp.Close {
				t.Fatal("the request after the refusals closes the connection")
			}
			if n := accepted.Load(); n != 1 {
				t.Fatalf("%d connections for 4 requests, want 1", n)
			}
		})
	}
}

// A client whose upload stalls gets its answer at once all the same, and
// its connection ends once the rest has not come within the discard's
// gap; the close lingers (the client may still send). Many at once: each
// waits its own gap, none waits behind another.
func TestRefusalOfAStalledUploadIsAnsweredAtOnceAndCloses(t *testing.T) {
	for _, b := range refusedBodies {
		t.Run(b.name, func(t *testing.T) {
			const clients = 50
			m, addr, _ := serveRefusals(t, Discard{Gap: 10 * time.Millisecond, Total: time.Hour})
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for range clients {
				c := dialFrom(t, "127.0.0.1", addr)
				wg.Go(func() {
					c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
					br := bufio.NewReader(c)
					fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", b.head)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("no answer while the upload stalls: %w", err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					if resp.StatusCode != http.StatusUnauthorized {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
						return
					}
					// Then the server half-closes: the client reads its end.
					if _, err := br.ReadByte(); err != io.EOF {
						errs <- fmt.Errorf("after the answer: %v, want the server's close", err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := testutil.ToFloat64(m.linger); n != clients {
				t.Fatalf("%v connections lingering, want %d", n, clients)
			}
		})
	}
}

// More of the rest than the byte bound ends the connection after the
// answer: a chunked body of unknown length read past it, and a declared
// length over it not read at all (as net/http does); so does a rest that
// breaks its framing, lest net/http read it as the next request.
func TestRefusalClosesPastTheDiscardsBounds(t *testing.T) {
	cases := []struct {
		name, head, rest string
		close            bool // said in the answer: decided before it
	}{
		{"chunked over the bound", "Transfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("a", 4096),
			"\r\n10000\r\n" + strings.Repeat("a", 64<<10), false},
		{"length over the bound", "Content-Length: 100000\r\n\r\n" + strings.Repeat("a", 4096), strings.Repeat("a", 1000), true},
		{"broken chunk", "Transfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("a", 4096),
			"\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, _ := serveRefusals(t, Discard{Bytes: 16 << 10, Gap: time.Hour, Total: time.Hour})
			c := dialFrom(t, "127.0.0.1", addr)
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
			br := bufio.NewReader(c)
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", tc.head)
			if resp := readAnswer(t, br, http.StatusUnauthorized); resp.Close != tc.close {
				t.Fatalf("answer says close %v, want %v", resp.Close, tc.close)
			}
			io.WriteString(c, tc.rest)
			if more, err := io.ReadAll(br); err != nil || len(more) > 0 {
				t.Fatalf("after the answer: %q %v, want the server's close", more, err)
			}
		})
	}
}

// The answers that cannot go first close the connection before the
// body as guardbody made them: one of no declared length (it would be
// chunked, and end only after the discard), and one to a client waiting
// for 100 Continue, which has not sent the body and is not asked for it.
func TestRefusalThatCannotGoFirstCloses(t *testing.T) {
	_, addr, _ := serveRefusals(t, Discard{Gap: time.Hour, Total: time.Hour})
	for _, tc := range []struct{ name, req string }{
		{"no length", "POST /plain HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("a", 4096)},
		{"expect 100-continue", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10000\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", addr)
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
			io.WriteString(c, tc.req)
			if resp := readAnswer(t, bufio.NewReader(c), http.StatusUnauthorized); !resp.Close {
				t.Fatal("the answer keeps the connection")
			}
		})
	}
}

// A graceful shutdown is not held by a refused upload whose rest is
// still awaited: closing the listener cuts the discard, as it cuts a
// lingering close (a server shutting down does not wait for clients that
// are already answered). Before review30 Shutdown waited out the
// discard's bounds (5 s for a trickling client), for a connection it
// closes anyway.
func TestShutdownCutsADiscard(t *testing.T) {
	_, addr, _, srv := serveRefusalsSrv(t, Discard{Gap: time.Hour, Total: time.Hour})
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s", refusedBodies[0].head)
	readAnswer(t, br, http.StatusUnauthorized)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // hang guard
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v; want it not held by the discard", err)
	}
	// A reset is the close of a server shutting down, which does not
	// linger (Listener.Close); the answer was read before it.
	if more, err := io.ReadAll(br); len(more) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the answer: %q %v, want the server's close", more, err)
	}
}

// A refusal to a client that asked for the connection's close (or an
// HTTP/1.0 one) does not wait for the body's rest: the connection closes
// after the answer whatever comes, so the old path (the answer, then the
// lingering close) serves it; before review30 the handler waited the
// discard's bounds for a rest it then threw away with the connection.
func TestRefusalOfAClosingRequestDoesNotWaitForTheRest(t *testing.T) {
	_, addr, _ := serveRefusals(t, Discard{Gap: time.Hour, Total: time.Hour})
	for _, tc := range []struct{ name, req string }{
		{"connection close", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"},
		{"http/1.0", "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", addr)
			c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
			br := bufio.NewReader(c)
			io.WriteString(c, tc.req+refusedBodies[0].head)
			if resp := readAnswer(t, br, http.StatusUnauthorized); !resp.Close {
				t.Fatal("the answer keeps the connection")
			}
			if more, err := io.ReadAll(br); err != nil || len(more) > 0 {
				t.Fatalf("after the answer: %q %v, want the server's close at once", more, err)
			}
		})
	}
}

// noHijack is a response writer that reaches net/http's through Unwrap
// (its deadlines, full duplex) but refuses to hijack, as a middleware's
// writer may.
type noHijack struct{ http.ResponseWriter }

func (w noHijack) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (noHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("this writer does not hijack")
}

// When the connection cannot be taken from net/http to close it (a
// writer that refuses to hijack), an answer that went out before a broken
// rest still ends the connection: nothing after the broken chunk, which
// net/http has already buffered, is served as a request. Before review30
// the fallback only failed the socket's further reads, and net/http
// parsed and answered the smuggled request from its buffer.
func TestRefusalClosesWhenTheConnectionCannotBeTaken(t *testing.T) {
	_, addr, _ := serveRefusals(t, Discard{Gap: time.Hour, Total: time.Hour})
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "POST /nohijack/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n%s", strings.Repeat("a", 4096))
	readAnswer(t, br, http.StatusUnauthorized)
	// The broken chunk and the request after it in one write: net/http's
	// buffer has both when the discard fails.
	io.WriteString(c, "\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	if more, err := io.ReadAll(br); len(more) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the answer: %q %v, want the server's close", more, err)
	}
}
