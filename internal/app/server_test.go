package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// The server: section reaches the running gateway: header size, idle
// keep-alive timeout, per-address connection cap and the process memory
// limit, with their metrics.
func TestServerSectionIsApplied(t *testing.T) {
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue: {enabled: false}
server:
  max_connections_per_ip: 2
  max_header_bytes: 1KiB
  idle_timeout: 2s
  memory_limit: 3GiB
`+noProbes+`models:
  - name: m1
    backends:
      - url: %s
`, b.URL)
	writeFile(t, path, src)
	a := newApp(t, path)
	if _, err := a.ListenAdmin("127.0.0.1:0"); err != nil { // not the default port: tests run in parallel
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if got := debug.SetMemoryLimit(-1); got != before {
			t.Errorf("memory limit %d after Run, want the earlier %d back", got, before)
		}
	}()
	reg := a.deps.Registry.(*prometheus.Registry)

	// Requests on a connection, one at a time.
	dial := func() *rawConn { return dialRaw(t, addr) }
	get := func(cl *rawConn, extra string) (int, error) {
		return cl.get("GET /v1/models HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n")
	}

	// The third connection must come while the first two are open: idle
	// since their answers, they are closed after idle_timeout. At 300 ms a
	// loaded machine could take that long between the first answer and
	// the third request; 2 s leaves room, and the wait for the close
	// below is that long.
	c1, c2 := dial(), dial()
	for _, cl := range []*rawConn{c1, c2} {
		if code, err := get(cl, ""); err != nil || code != http.StatusOK {
			t.Fatalf("within the caps: %d %v", code, err)
		}
	}
	// A third is answered by the refusal tier: 503, Retry-After, closed.
	third := dial()
	if code, err := get(third, ""); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a third connection from one address: %d %v, want the refusal tier's 503 (max_connections_per_ip is 2)", code, err)
	}
	if got := refusedTotal(t, reg, netguard.ListenerPublic, netguard.RefusedMaxPerIP); got != 1 {
		t.Fatalf("per-address refusals = %v", got)
	}
	third.c.Close() // ends its lingering close
	eventually(t, "the refusal to be counted", func() bool {
		return promtest.Value(t, reg, "sluice_connection_refusals_total", "head") == 1
	})

	// The idle keep-alive connections are closed by the server, which
	// frees their slots.
	for _, cl := range []*rawConn{c1, c2} {
		if n, err := cl.br.Read(make([]byte, 1)); err == nil {
			t.Fatalf("idle connection still open (read %d bytes)", n)
		}
	}
	eventually(t, "the idle connections' slots to be freed", func() bool {
		return promtest.Value(t, reg, "sluice_connections_open", "") == 0
	})

	if code, err := get(dial(), "X-Big: "+strings.Repeat("a", 8<<10)+"\r\n"); err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized header: %d %v, want 431", code, err)
	}
	if got := promtest.Value(t, reg, "sluice_request_header_too_large_total", ""); got != 1 {
		t.Fatalf("431s counted = %v", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Fatalf("memory limit %d while serving, want server.memory_limit (3GiB)", got)
	}
}

// A batch file upload (spooled to disk, not held in memory) that stalls is
// cut by the same body timeout as an inference body.
func TestStalledFileUploadGets408(t *testing.T) {
	part := "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{\"custom_id\":"
	expectStalledBody408(t, "{data_dir: %s}", "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: 100000\r\n\r\n"+part)
}

// A completion whose body stalls is cut with 408 by the body timeout
// through the whole server (listener, framing scanner): a request skips
// the body's time bounds only when the listener has read its body whole
// (netguard.BodyReceived), and this one's is still on the wire.
func TestStalledCompletionBodyGets408(t *testing.T) {
	expectStalledBody408(t, "{enabled: false}", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"+`{"model":"m","messages":[`)
}

// expectStalledBody408 starts a gateway with a 200 ms body timeout and the
// queue section given (a %s in it is a fresh data dir), sends head, which
// announces more body than it carries, and expects the 408 as an OpenAI
// error.
func expectStalledBody408(t *testing.T, queue, head string) {
	t.Helper()
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if strings.Contains(queue, "%s") {
		queue = fmt.Sprintf(queue, t.TempDir())
	}
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue: %s
server:
  body_read_timeout: 200ms
`+noProbes+`models:
  - name: m
    backends:
      - url: %s
`, queue, b.URL)
	writeFile(t, path, src)
	url, stop, done := startApp(t, path)
	defer func() {
		stop()
		if err := stopErr(t, <-done); err != nil {
			t.Error(err)
		}
	}()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":"request_timeout"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// rawConn is a client connection that writes requests by hand, one at a
// time, and reads each answer (connection caps, keep-alive).
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialRaw connects to addr, closed at the test's end, with a 20 s hang
// guard on every read and write.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{c, bufio.NewReader(c)}
}

// get writes head (a request with no body, its blank line included) and
// reads the answer: its status.
func (rc *rawConn) get(head string) (int, error) {
	if _, err := io.WriteString(rc.c, head); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A request refused before its body is read (an unlisted API key: 401) is
// answered at once through the whole server, though its client stalls
// the upload, and the connection closes: net/http would discard the
// body's unread rest (under 256 KiB) before writing the answer, waiting
// for body_read_timeout (here an hour, far past the hang guard).
func TestUnauthenticatedStalledUploadIsAnsweredAtOnce(t *testing.T) {
	url := startKeyedApp(t, "server:\n  body_read_timeout: 1h\n")
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-unlisted-0123456789\r\nContent-Type: application/json\r\nContent-Length: 204800\r\n\r\n%s", strings.Repeat(" ", 8192))
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang guard
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the upload stalls: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d; want 401", resp.StatusCode)
	}
	// The rest never comes: the connection closes after the discard's gap.
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the answer: %d bytes, %v; want the server's close", n, err)
	}
}

// Refusals of bodies still arriving keep the client's connection when
// the rest follows: through the whole server, an unlisted key's 401 is
// answered while the upload is under way, the client sends the rest, and
// its next request goes on the same connection (guardbody's close cost
// each such refusal a new connection).
func TestRefusedUploadsKeepTheirConnection(t *testing.T) {
	url := startKeyedApp(t, "")
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
	br := bufio.NewReader(c)
	for i := range 5 {
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-unlisted-0123456789\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n%s", strings.Repeat(" ", 8192))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("refusal %d: no answer while the upload is under way: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || resp.Close {
			t.Fatalf("refusal %d: status %d, close %v; want 401 keeping the connection", i, resp.StatusCode, resp.Close)
		}
		io.WriteString(c, strings.Repeat(" ", 20000-8192))
	}
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request after the refusals: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the request after the refusals: status %d", resp.StatusCode)
	}
}

// startKeyedApp serves model m on one backend with one listed key
// (sk-acme), access log and queue off, extra YAML (top-level keys) added;
// the server stops at the test's end.
func startKeyedApp(t *testing.T, extra string) string {
	t.Helper()
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue: {enabled: false}
%sauth:
  keys:
    - {key: sk-acme, tenant: acme}
models:
  - name: m
    backends:
      - url: %s
`, extra, b.URL)
	writeFile(t, path, src)
	url, stop, done := startApp(t, path)
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return url
}

// server.linger reaches the public listener, and a reload changes it for
// the closes that start after it: a refused upload whose client sends on
// past the answer is closed at the reloaded max_bytes (256 KiB of the 1
// MiB it sends), not after reading it all and waiting lingering_timeout.
// Before, the listener's bounds were constants: the close read the whole
// MiB and ended by its 5 s timeout.
func TestLingerBoundsApplyOnReload(t *testing.T) {
	b := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(linger string) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n%sserver:\n  linger: {%s}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n",
			noProbes, linger, b.URL)
		writeFile(t, path, src)
	}
	write("read_timeout: 1h")
	a := newApp(t, path)
	url, admin := serveApp(t, a)
	write("max_bytes: 256KiB, read_timeout: 1h")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	const body = 1 << 20
	fmt.Fprintf(c, "POST /v1/no-such-route HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", body, strings.Repeat("a", 4096))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Fatalf("status %d, close %v; want 404 closing", resp.StatusCode, resp.Close)
	}
	// The rest; the writes fail once the server has closed (a reset).
	io.WriteString(c, strings.Repeat("a", body-4096))
	ends := func() string { return metric(t, admin, `sluice_connection_lingers_total{`) }
	eventually(t, "the lingering close's end", func() bool { return strings.Contains(ends(), "} 1") })
	if got := ends(); !strings.Contains(got, `sluice_connection_lingers_total{end="bytes"} 1`) {
		t.Fatalf("lingering closes:\n%s\nwant one ended at server.linger.max_bytes", got)
	}
}
