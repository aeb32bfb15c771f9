package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A reload that changes timeouts.stream_idle keys a new lean client (its
// send bound is part of the key). The idle-connection limit summed every
// client ever made, so it read twice the bound of the pool requests take,
// and the old client's idle connections stayed open until their idle
// timeout (90 s) on a pool no new request takes. Now the limit is the
// serving router's pool's, and the old pool's idle connections are closed
// at the swap; the counters (opened) still add up every client's.
func TestReloadedSendBoundRetiresTheOldLeanPool(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := NewTransportCache()
	defer tr.Close()
	get := func(r *Router) { readAll(getThrough(t, r, srv.URL)) }
	first := tr.Router(5*time.Second, time.Minute, true, nil, nil)
	tr.SetCurrent(first)
	get(first)
	before := tr.LeanStats()
	if before.Idle != 1 || before.MaxIdle <= 0 {
		t.Fatalf("before the reload: %+v; want one idle connection and a limit", before)
	}
	next := tr.Router(5*time.Second, 30*time.Second, true, nil, nil) // stream_idle 60s -> 30s
	if !tr.SetCurrent(next) {
		t.Error("SetCurrent reported nothing retired; want the old lean client, for CloseRetired after the drain")
	}
	after := tr.LeanStats()
	if after.MaxIdle != before.MaxIdle {
		t.Errorf("idle-connection limit after the reload %d; want the serving pool's %d (not the sum of both pools')", after.MaxIdle, before.MaxIdle)
	}
	if after.Idle != 0 {
		t.Errorf("%d idle connections after the reload; want the old pool's closed at the swap", after.Idle)
	}
	get(next)
	if st := tr.LeanStats(); st.Dials != 2 || st.Idle != 1 {
		t.Errorf("after a request on the new pool: %+v; want 2 dials counted (both clients') and its one idle connection", st)
	}
	// A reload back to the first bound takes its client again: CloseRetired
	// then leaves the serving pool's connections alone.
	tr.SetCurrent(first)
	get(first)
	tr.CloseRetired()
	if st := tr.LeanStats(); st.Idle != 1 {
		t.Errorf("CloseRetired after a reload back: %d idle; want the serving pool's connection kept", st.Idle)
	}
}

// Retiring the old lean client closed its idle connections with
// h1client's CloseIdleConnections, which closes its Fallback's too: the
// net/http transport for the connect timeout with Go's TLS, which the
// next router still takes for https backends (HTTP/2 over TLS) and the
// health checks and load scrapes (Current). A reload that changed only
// timeouts.stream_idle so closed their warm connections, at the swap and
// again after the drain, where retire leaves the transports without a
// TLS profile alone (For hands them out to other callers too).
func TestRetiredLeanPoolLeavesTheSharedTransportAlone(t *testing.T) {
	for _, tc := range []struct {
		name string
		lean bool
		idle time.Duration
	}{
		{"stream_idle 60s -> 30s", true, 30 * time.Second},
		{"upstream_client lean -> net/http", false, time.Minute}, // next's plain is that transport
	} {
		t.Run(tc.name, func(t *testing.T) { retireLeanBeside(t, tc.lean, tc.idle) })
	}
}

func retireLeanBeside(t *testing.T, lean bool, streamIdle time.Duration) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tr := NewTransportCache()
	defer tr.Close()
	probe := func() { readAll(getThrough(t, tr.Current(5*time.Second), srv.URL)) }
	tr.SetCurrent(tr.Router(5*time.Second, time.Minute, true, nil, nil))
	probe() // a health check: net/http's transport, one idle connection
	if open, opened := tr.TransportConns(); open != 1 || opened != 1 {
		t.Fatalf("after the probe: %d open, %d opened; want 1, 1", open, opened)
	}
	if !tr.SetCurrent(tr.Router(5*time.Second, streamIdle, lean, nil, nil)) {
		t.Fatal("SetCurrent reported nothing retired; want the old lean client")
	}
	if open, _ := tr.TransportConns(); open != 1 {
		t.Errorf("%d net/http connections open after the swap; want the shared transport's idle one kept", open)
	}
	tr.CloseRetired()
	if open, _ := tr.TransportConns(); open != 1 {
		t.Errorf("%d net/http connections open after CloseRetired; want the shared transport's idle one kept", open)
	}
	probe()
	if _, opened := tr.TransportConns(); opened != 1 {
		t.Errorf("%d net/http connections opened after the reload; want the probe's kept one reused (1)", opened)
	}
}
