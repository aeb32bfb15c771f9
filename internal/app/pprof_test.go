package app

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
)

// The deprecated --pprof listener has the admin listener's connection
// protection: its cap (admin.max_connections, here 2: a third connection
// gets the refusal tier's 503, counted with listener="pprof") and its
// 64 KiB bound on a head. Before, it was a bare http.Server: every
// connection served, heads up to net/http's 1 MiB.
func TestPprofListenerHasAdminProtection(t *testing.T) {
	be := backend(t, "a")
	a := newApp(t, writeAdminConfig(t, be.URL, "{max_connections: 2}"))
	reg := a.deps.Registry.(*prometheus.Registry)
	_, _, stop, done := runApp(t, a)
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, guarded := a.PprofServer(ln, a.Gateway().PprofHandler())
	go srv.Serve(guarded)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	const cmdline = "GET /debug/pprof/cmdline HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	// Two connections kept open (idle, after their answers).
	for _, cl := range []*rawConn{dialRaw(t, addr), dialRaw(t, addr)} {
		if code, err := cl.get(cmdline + "\r\n"); err != nil || code != http.StatusOK {
			t.Fatalf("within the cap: %d %v", code, err)
		}
	}
	if code, err := dialRaw(t, addr).get(cmdline + "\r\n"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a third pprof connection: %d %v, want the refusal tier's 503 (admin.max_connections is 2)", code, err)
	}
	if got := refusedTotal(t, reg, netguard.ListenerPprof, netguard.RefusedMaxConnections); got != 1 {
		t.Errorf("pprof refusals counted %v, want 1", got)
	}
	if got := refusedTotal(t, reg, netguard.ListenerAdmin, netguard.RefusedMaxConnections); got != 0 {
		t.Errorf("admin refusals counted %v, want 0: the refusal was the pprof listener's", got)
	}
	srv.Close() // frees the two slots for the head-size check on a new server
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv2, guarded := a.PprofServer(ln, a.Gateway().PprofHandler())
	go srv2.Serve(guarded)
	t.Cleanup(func() { srv2.Close() })
	pad := "X-Pad: " + strings.Repeat("a", 100<<10) + "\r\n"
	if code, err := dialRaw(t, ln.Addr().String()).get(cmdline + pad + "\r\n"); err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 100 KiB head: %d %v, want 431 (the admin listener's 64 KiB bound)", code, err)
	}
}
