package gateway

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// routableAddr is an address of this host off loopback, or "" when it has
// none (then the test is skipped): a connection from it to itself has a
// peer that is not loopback, as a scraper on another host would.
func routableAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this host has no IPv4 address off loopback")
	return ""
}

// An admin listener bound off loopback without admin.token answers only
// this host: /status (tenants, backend URLs), /metrics and pprof were
// served to anyone who reached the address. With the token set, other
// hosts are answered as before (token required); the page's assets hold
// no data and stay open.
func TestAdminWithoutTokenAnswersLoopbackOnly(t *testing.T) {
	host := routableAddr(t)
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Pprof = true
	_, gw := startGateway(t, cfg)

	srv := adminServerOn(t, gw, host)

	for _, path := range []string{"/status", "/metrics", "/debug/pprof/cmdline", "/scaling", "/spare?model=m1"} {
		code, _, body := get(t, srv.URL+path)
		if _, c, _ := apiErr(t, body); code != http.StatusForbidden || c != "admin_token_required" {
			t.Errorf("%s from %s without admin.token: %d %.120s, want 403 admin_token_required", path, host, code, body)
		}
	}
	if code, _, _ := get(t, srv.URL+"/"); code != http.StatusOK {
		t.Errorf("the dashboard page from %s: %d, want 200 (it holds no data)", host, code)
	}
	// This host, on loopback, is answered without a token, as before.
	loop := adminServer(t, gw)
	if code, _, body := get(t, loop.URL+"/metrics"); code != 200 || !strings.Contains(body, "sluice_") {
		t.Fatalf("loopback /metrics without a token: %d", code)
	}

	// With a token set, other hosts are answered with it.
	cfg = testConfig(be.URL)
	cfg.Admin.Token = "s3cret-admin"
	_, gw = startGateway(t, cfg)
	srv = adminServerOn(t, gw, host)
	if code, _, _ := get(t, srv.URL+"/metrics"); code != http.StatusUnauthorized {
		t.Errorf("token set, none sent, from %s: %d, want 401", host, code)
	}
	if code, _, body := get(t, srv.URL+"/metrics", "Authorization", "Bearer s3cret-admin"); code != 200 || !strings.Contains(body, "sluice_") {
		t.Errorf("token set and sent from %s: %d", host, code)
	}
}

// adminServerOn serves gw's admin handler on host (an address of this
// host), as admin.listen would.
func adminServerOn(t *testing.T, gw *Gateway, host string) *httptest.Server {
	t.Helper()
	return serveOn(t, gw.AdminHandler(), host)
}

// serveOn serves h on a listener bound to host.
func serveOn(t *testing.T, h http.Handler, host string) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// The deprecated --pprof listener (PprofHandler) has the admin listener's
// gate: without admin.token it answers this host's loopback only, with one
// only the token. Before, it served the process' command line, heap and
// CPU profiles to anyone who reached its address.
func TestPprofListenerHasTheAdminGate(t *testing.T) {
	host := routableAddr(t)
	be := newOKBackend(t)
	_, gw := startGateway(t, testConfig(be.URL))
	off := serveOn(t, gw.PprofHandler(), host)
	if code, _, body := get(t, off.URL+"/debug/pprof/cmdline"); code != http.StatusForbidden || !strings.Contains(body, "admin_token_required") {
		t.Errorf("pprof from %s without admin.token: %d %.120s, want 403 admin_token_required", host, code, body)
	}
	loop := serveOn(t, gw.PprofHandler(), "127.0.0.1")
	if code, _, _ := get(t, loop.URL+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("pprof from loopback without admin.token: %d, want 200", code)
	}

	cfg := testConfig(be.URL)
	cfg.Admin.Token = "s3cret-admin"
	_, gw = startGateway(t, cfg)
	off = serveOn(t, gw.PprofHandler(), host)
	if code, hdr, _ := get(t, off.URL+"/debug/pprof/cmdline"); code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("pprof without the token: %d, want 401 with a challenge", code)
	}
	if code, _, _ := get(t, off.URL+"/debug/pprof/cmdline", "Authorization", "Bearer s3cret-admin"); code != http.StatusOK {
		t.Errorf("pprof with the token from %s: %d, want 200", host, code)
	}
	if code, _, _ := get(t, off.URL+"/status", "Authorization", "Bearer s3cret-admin"); code != http.StatusNotFound {
		t.Errorf("/status on the pprof listener: %d, want 404 (pprof only)", code)
	}
}
