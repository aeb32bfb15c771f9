package netguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serve runs an http.Server over a Listener with limits on loopback.
func serve(t *testing.T, limits ConnLimits, maxHeader int) (*Listener, *ConnMetrics, string) {
	return serveWith(t, limits, &http.Server{MaxHeaderBytes: maxHeader})
}

func serveWith(t *testing.T, limits ConnLimits, srv *http.Server) (*Listener, *ConnMetrics, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewConnMetrics(prometheus.NewRegistry())
	l := NewListener(ln, limits, m)
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv.ConnState = l.ConnState
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, m, ln.Addr().String()
}

// dialFrom connects from a chosen loopback address (Linux routes all of
// 127/8 to lo), as a distinct client.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// served reports whether c gets an answer to a keep-alive request: true
// for an admitted connection, false for one closed at accept.
func served(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open connections %d, want %d", l.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPerAddressAndTotalCapsRefuseAtAcceptAndFreeOnClose(t *testing.T) {
	l, m, addr := serve(t, ConnLimits{Total: 3, PerIP: 2}, 0)

	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	if !served(t, a1) || !served(t, a2) {
		t.Fatal("connections within the caps were not served")
	}
	if served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a third connection from one address was served (per-address cap 2)")
	}
	if !served(t, dialFrom(t, "127.0.0.2", addr)) {
		t.Fatal("another address was refused while under the total cap")
	}
	if served(t, dialFrom(t, "127.0.0.3", addr)) {
		t.Fatal("a fourth connection was served (total cap 3)")
	}
	if got := testutil.ToFloat64(m.refusal.WithLabelValues(ListenerPublic, RefusedMaxPerIP)); got != 1 {
		t.Fatalf("per-address refusals = %v", got)
	}
	if got := testutil.ToFloat64(m.refusal.WithLabelValues(ListenerPublic, RefusedMaxConnections)); got != 1 {
		t.Fatalf("total refusals = %v", got)
	}
	if got := testutil.ToFloat64(m.open); got != 3 {
		t.Fatalf("open gauge = %v", got)
	}

	a1.Close() // the server sees EOF and closes its side: the slot is free
	waitOpen(t, l, 2)
	if !served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("the freed slot was not given to a new connection")
	}

	l.SetLimits(ConnLimits{Total: 10, PerIP: 0}) // reload: no per-address cap
	for i := range 2 {                           // two more from one address, over the old per-address cap
		if !served(t, dialFrom(t, "127.0.0.1", addr)) {
			t.Fatalf("raised caps not applied: connection %d refused", i+1)
		}
	}
}

func TestHeaderTooLargeAnswered431AndCounted(t *testing.T) {
	_, m, addr := serve(t, ConnLimits{Total: 10}, 1<<10)
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if got := testutil.ToFloat64(m.header); got != 1 {
		t.Fatalf("431s counted = %v", got)
	}
	if !served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a normal request after a 431 was not served")
	}
	if got := testutil.ToFloat64(m.header); got != 1 {
		t.Fatalf("a normal answer was counted as a 431: %v", got)
	}
}

// net/http closes idle and slow-header connections silently; the listener
// counts which timeout it was, and answers a late head 408 (HAProxy's
// timeout http-request) but not an idle keep-alive connection, whose
// client may be sending its next request just then.
func TestIdleAndHeaderTimeoutsCounted(t *testing.T) {
	// Two servers, so that each short timeout only ever fires on a
	// connection that is meant to hit it: on the first, the request that
	// must be served before going idle has a minute to arrive (a loaded
	// machine may delay the client's write past a short head timeout);
	// the second's short head timeout meets only heads that never end.
	_, m, addr := serveWith(t, ConnLimits{Total: 10}, &http.Server{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: time.Minute})
	_, mh, addrH := serveWith(t, ConnLimits{Total: 10}, &http.Server{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond})
	closed := func(c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("connection not closed silently by the server: %d %v", n, err)
		}
	}
	answered408 := func(c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a late head was not answered: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close || !strings.Contains(string(b), `"code":"request_timeout"`) {
			t.Fatalf("answer %d %s", resp.StatusCode, b)
		}
	}
	idle := dialFrom(t, "127.0.0.1", addr)
	if !served(t, idle) {
		t.Fatal("not served")
	}
	closed(idle)
	if got := testutil.ToFloat64(m.timeout.WithLabelValues("idle")); got != 1 {
		t.Fatalf("idle timeouts = %v", got)
	}
	if got := testutil.ToFloat64(m.timeout.WithLabelValues("header")); got != 0 {
		t.Fatalf("an idle timeout was counted as a header timeout: %v", got)
	}
	slow := dialFrom(t, "127.0.0.1", addrH)
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n") // the header never ends
	answered408(slow)
	silent := dialFrom(t, "127.0.0.1", addrH) // a new connection that sends nothing
	answered408(silent)
	if got := testutil.ToFloat64(mh.timeout.WithLabelValues("header")); got != 2 {
		t.Fatalf("header timeouts = %v", got)
	}
	if got := testutil.ToFloat64(mh.timeout.WithLabelValues("idle")); got != 0 {
		t.Fatalf("idle timeouts = %v after header timeouts, want 0", got)
	}
}

// peersAs is a real loopback listener whose accepted connections report
// chosen peer addresses in turn: the machine has one IPv6 loopback
// address, and the per-address cap must be shown on several of one /64.
type peersAs struct {
	net.Listener
	peers chan net.Addr
}

func (p peersAs) Accept() (net.Conn, error) {
	c, err := p.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return peerConn{Conn: c, peer: <-p.peers}, nil
}

type peerConn struct {
	net.Conn
	peer net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.peer }

// The per-address cap counts an IPv6 client by its /64: two addresses of
// one /64 share one slot (the second gets the refusal tier's 503), the
// next /64 has its own.
func TestPerAddressCapGroupsIPv6BySlash64(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := make(chan net.Addr, 3)
	m := NewConnMetrics(prometheus.NewRegistry())
	l := NewListener(peersAs{Listener: ln, peers: peers}, tierLimits(4, time.Hour, 4<<10), m)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	for _, p := range []string{"[2001:db8:1:2::a]:1000", "[2001:db8:1:2:ffff::1]:1001", "[2001:db8:1:3::a]:1002"} {
		peers <- net.TCPAddrFromAddrPort(netip.MustParseAddrPort(p))
	}

	if !served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("the first address of 2001:db8:1:2::/64 was not served")
	}
	second := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(second, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	read503(t, second)
	if !served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("2001:db8:1:3::/64 was refused: another /64 is another client")
	}
}
