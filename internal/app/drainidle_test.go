package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// connCounted is a backend that counts its open connections.
func connCounted(t *testing.T, name string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"served_by":%q}`, name)
	}))
	var open atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &open
}

// TestRemovedBackendClosesOnlyItsIdleConnections: when a backend that
// left the pool has drained, its keep-alive connections are closed and
// the lean client's warm ones to the backend that stays are kept (every
// idle connection, to every backend, was closed at each removal: the
// next burst dialled them all again).
func TestRemovedBackendClosesOnlyItsIdleConnections(t *testing.T) {
	b, bOpen := connCounted(t, "b")
	c, _ := connCounted(t, "c")
	targets := filepath.Join(t.TempDir(), "targets.json")
	writeTargets(t, targets, b.URL, c.URL)
	a, url := startDiscoveryApp(t, targets, "30s")
	eventually(t, "b and c discovered", func() bool { return len(poolURLs(a)) == 2 })
	for range 6 { // round_robin: both backends answer, their connections go idle
		if code, body := chat(url, "m1"); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	if n := a.deps.Transport.LeanStats().Idle; n < 2 {
		t.Fatalf("%d idle upstream connections, want one to each backend at least", n)
	}

	writeTargets(t, targets, c.URL)
	eventually(t, "the pool to be c only", samePool(a, c.URL))
	eventually(t, "b's connections to be closed", func() bool { return bOpen.Load() == 0 })
	// CloseIdle took every idle connection out of the pool before it
	// closed the first, so b's closes seen means c's would be gone too.
	if n := a.deps.Transport.LeanStats().Idle; n < 1 {
		t.Errorf("%d idle upstream connections after b's were closed, want c's kept", n)
	}
	if code, body := chat(url, "m1"); code != 200 {
		t.Fatalf("after the removal: %d %s", code, body)
	}
}
