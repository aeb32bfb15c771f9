package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRefusalAndAdminLingerFollowServerLinger: server.linger bounds the
// refusal tier's lingering close after its 503 (cut to the tier's
// ceilings) and the admin listener's, and a reload applies it to both,
// as to the public listener's. Before, both were constants (64 MiB): a
// client sending on after its answer had 1 MiB read and dropped, whatever
// server.linger.max_bytes said.
func TestRefusalAndAdminLingerFollowServerLinger(t *testing.T) {
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(linger string) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n%sserver:\n  max_connections: 1\n  discard: {max_bytes: 16KiB}\n  linger: {%s}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n",
			noProbes, linger, b.URL)
		writeFile(t, path, src)
	}
	write("read_timeout: 1h")
	a := newApp(t, path)
	url, admin := serveApp(t, a)
	addr := strings.TrimPrefix(url, "http://")

	// The one connection the cap allows, admitted and held; both
	// listeners serve before the reload.
	held := dialRaw(t, addr)
	if code, err := held.get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil || code != http.StatusOK {
		t.Fatalf("held connection: %d %v", code, err)
	}
	metric(t, admin, "sluice_connections_open")
	write("max_bytes: 64KiB, read_timeout: 1h")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}

	// More than the client's and the server's socket buffers hold
	// (dialHang gives the client 4 MiB, doubled by the kernel), and less
	// than the 64 MiB the tier and the admin listener read before: what
	// is still being written when the server closes is reset.
	const rest = 48 << 20
	// Over the cap: the tier's 503 after the head, then the client sends
	// on past server.linger.max_bytes.
	c := dialHang(t, addr)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", rest)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the cap: status %d, want the tier's 503", resp.StatusCode)
	}
	if err := sendPastLinger(c, rest); err == nil {
		t.Fatalf("the tier's lingering close read all %d bytes sent after its 503; want it to stop at server.linger.max_bytes (64KiB)", rest)
	}
	ends := func() string { return metric(t, admin, `sluice_connection_refusal_lingers_total{`) }
	eventually(t, "the tier's lingering close's end", func() bool { return strings.Contains(ends(), "} 1") })
	if got := ends(); !strings.Contains(got, `sluice_connection_refusal_lingers_total{end="bytes"} 1`) {
		t.Fatalf("the tier's lingering closes:\n%s\nwant one ended at server.linger.max_bytes", got)
	}

	// The admin listener: a head over its 64 KiB is answered 431 while
	// the client is still sending, and the close lingers.
	ac := dialHang(t, strings.TrimPrefix(admin, "http://"))
	fmt.Fprintf(ac, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: %s", strings.Repeat("b", 80<<10))
	resp, err = http.ReadResponse(bufio.NewReader(ac), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("admin, oversized head: status %d, want 431", resp.StatusCode)
	}
	if err := sendPastLinger(ac, rest); err == nil {
		t.Fatalf("the admin listener's lingering close read all %d bytes sent after its 431; want it to stop at server.linger.max_bytes (64KiB)", rest)
	}
}

// dialHang dials addr, closed at the test's end, with a hang guard.
func dialHang(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A send buffer as large as a host whose tcp_wmem allows 4 MiB or
	// more gives: the bytes it takes are not read by the server.
	c.(*net.TCPConn).SetWriteBuffer(4 << 20)
	c.SetDeadline(time.Now().Add(60 * time.Second)) // hang guard
	return c
}

// sendPastLinger sends n bytes on c after its answer, half-closes, and
// reads to the end: nil when the server read them all and closed after
// the client (EOF), else the error that showed it closed first (a reset
// on a write or the read: it closed with bytes unread). n must be more
// than the socket buffers hold: the server half-closed after its answer,
// so a client that wrote all it sends into them reads that EOF, not the
// reset of a close that cut the drain short (with 4 MiB sent, the admin
// listener's half, whose close net/http delays 500 ms after the 431,
// failed on the right code when the buffers took the 4 MiB).
func sendPastLinger(c net.Conn, n int) error {
	chunk := []byte(strings.Repeat("a", 64<<10))
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil // the hang guard: the server neither read nor closed
			}
			return err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return nil // EOF: the server read everything, then closed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil // the hang guard: the server never closed
	}
	return err
}
