package netguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveRefusing runs a server whose handler answers 413 without reading
// the body and asks for a lingering close, as the gateway does.
func serveRefusing(t *testing.T, linger Linger) (*Listener, *ConnMetrics, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewConnMetrics(prometheus.NewRegistry())
	l := NewListener(ln, ConnLimits{Total: 10, Linger: linger}, m)
	srv := &http.Server{
		ConnContext: l.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			LingerOnClose(r.Context())
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, m, ln.Addr().String()
}

// refused sends a head announcing a large body, reads the 413 and returns
// the connection, still open for writing.
func refused(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return c
}

func lingers(m *ConnMetrics, end string) float64 {
	return testutil.ToFloat64(m.lingers.WithLabelValues(end))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that never stops sending is cut at the byte bound, and its
// slot is freed then.
func TestLingerEndsAtTheByteBound(t *testing.T) {
	l, m, addr := serveRefusing(t, Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 1 << 20})
	c := refused(t, addr)
	chunk := []byte(strings.Repeat("a", 32<<10))
	var sent int
	for sent < 64<<20 { // far past the bound: the gateway must close first
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	if sent >= 64<<20 {
		t.Fatalf("the drain took %d bytes past its 1 MiB bound", sent)
	}
	waitFor(t, "the drain to end at its byte bound", func() bool { return lingers(m, LingerBytes) == 1 })
	waitOpen(t, l, 0)
	if g := testutil.ToFloat64(m.linger); g != 0 {
		t.Errorf("lingering gauge %v after the drain", g)
	}
}

// A client that goes quiet is closed after lingering_timeout, one that
// finishes (closes) at once.
func TestLingerEndsAtTheTimeoutOrTheClientsClose(t *testing.T) {
	l, m, addr := serveRefusing(t, Linger{Time: time.Hour, Timeout: 200 * time.Millisecond, Bytes: 1 << 20})
	quiet := refused(t, addr)
	waitFor(t, "the quiet client's drain to time out", func() bool { return lingers(m, LingerTimeout) == 1 })
	if _, err := quiet.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("quiet client read %v after the drain, want EOF", err)
	}
	waitOpen(t, l, 0)
	// The closing client gets a server whose lingering_timeout cannot fire
	// first, however long a loaded machine takes between its connecting
	// and its close.
	l2, m2, addr2 := serveRefusing(t, Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 1 << 20})
	done := refused(t, addr2)
	done.Close()
	waitFor(t, "the closing client's drain to end at its EOF", func() bool { return lingers(m2, LingerEOF) == 1 })
	if n := lingers(m2, LingerTimeout); n != 0 {
		t.Errorf("%v drains ended by timeout on the second server", n)
	}
	waitOpen(t, l2, 0)
}

// Closing the listener (a shutdown) cuts lingering closes short.
func TestListenerCloseCutsLingering(t *testing.T) {
	l, m, addr := serveRefusing(t, Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 1 << 20})
	refused(t, addr)
	waitFor(t, "the drain to start", func() bool { return testutil.ToFloat64(m.linger) == 1 })
	l.Close()
	waitFor(t, "the drain to end at the shutdown", func() bool { return lingers(m, LingerShutdown) == 1 })
	waitOpen(t, l, 0)
}

// The refusal tier's linger follows the listener's (server.linger), cut to
// the tier's ceilings: a shorter linger shortens it, a longer one leaves
// the tier's 5 s / 1 s / 64 MiB, none stays none. Before, the tier's was
// those constants whatever the listener's.
func TestRefusalLingerFollowsTheListeners(t *testing.T) {
	for _, tc := range []struct{ lim, want Linger }{
		{DefaultLinger(), Linger{Time: 5 * time.Second, Timeout: time.Second, Bytes: 64 << 20}},
		{Linger{Time: 2 * time.Second, Timeout: 300 * time.Millisecond, Bytes: 64 << 10}, Linger{Time: 2 * time.Second, Timeout: 300 * time.Millisecond, Bytes: 64 << 10}},
		{Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 1 << 30}, Linger{Time: 5 * time.Second, Timeout: time.Second, Bytes: 64 << 20}},
		{Linger{}, Linger{}},
	} {
		if got := tc.lim.ForRefusal(); got != tc.want {
			t.Errorf("%+v.ForRefusal() = %+v, want %+v", tc.lim, got, tc.want)
		}
	}
	if got := DefaultRefusal().Linger; got != DefaultLinger().ForRefusal() {
		t.Errorf("DefaultRefusal().Linger = %+v, want DefaultLinger().ForRefusal()", got)
	}
}
