package app

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// When ca_file changes (a CA rotated in, here a second CA appended), the
// runtime that reads it takes a new transport, and the old one's idle
// connections, made under the old file, are closed at the swap: before,
// they stayed open for their idle timeout (90 s) and the transport for
// the life of the process. The backend sees the connections open before
// the reload closed, and the next request answered on a new one.
func TestUpstreamTLSRotationClosesOldIdleConnections(t *testing.T) {
	ca, other := newTestCA(t, "old"), newTestCA(t, "new")
	cert, _, _ := ca.issue(t, false, true)
	var open sync.Map // net.Conn -> true while open
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"served_by":"tls"}`))
	}))
	be.EnableHTTP2 = true
	be.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	be.Config.ErrorLog = log.New(io.Discard, "", 0)
	be.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Store(c, true)
		case http.StateClosed, http.StateHijacked:
			open.Delete(c)
		}
	}
	be.StartTLS()
	t.Cleanup(be.Close)

	dir := t.TempDir()
	caFile := writePEM(t, dir, "ca.pem", ca.pem)
	url, a, _ := startUpstreamTLSApp(t, dir, be.URL, "        tls: {ca_file: "+caFile+"}\n", "")
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("before the rotation: %d %s", code, body)
	}
	var before []net.Conn // the request's, and the load scrape's if it made its own
	open.Range(func(c, _ any) bool { before = append(before, c.(net.Conn)); return true })
	if len(before) == 0 {
		t.Fatal("no connection open before the rotation")
	}

	writePEM(t, dir, "ca.pem", append(append([]byte{}, ca.pem...), other.pem...))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old transport's idle connections closed", func() bool {
		for _, c := range before {
			if _, ok := open.Load(c); ok {
				return false
			}
		}
		return true
	})
	if code, body, _ := chatFull(t, url); code != 200 {
		t.Fatalf("after the rotation: %d %s", code, body)
	}
}
