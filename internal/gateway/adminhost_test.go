package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// getHost is get with the request's Host set to host.
func getHost(t *testing.T, rawURL, host string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readAll(t, resp)
}

// pprofConfig is testConfig on a backend that answers 200, with pprof on
// the admin listener and admin.token set to token ("": none); backend is
// that backend's URL.
func pprofConfig(t *testing.T, token string) (cfg *config.Config, backend string) {
	t.Helper()
	be := newOKBackend(t)
	cfg = testConfig(be.URL)
	cfg.Admin.Pprof = true
	cfg.Admin.Token = token
	return cfg, be.URL
}

// adminDo sends method to path on the admin listener at base with the
// bearer token and body ("": none) and returns the answer.
func adminDo(t *testing.T, base, token, method, path, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, readAll(t, resp)
}

// DNS rebinding: a web page the operator opens can make its own name
// resolve to 127.0.0.1 and then read, as its own origin, whatever the
// token-less admin listener answers its browser, a loopback peer. Before,
// /status (tenants, backend URLs), /metrics, /scaling and pprof answered
// 200 whatever the Host; now a token-less admin listener answers requests
// addressed to an IP or localhost only. The page, which holds no data,
// still loads; with admin.token set the Host does not matter (a rebinding
// page cannot know the token).
func TestAdminWithoutTokenRefusesForeignHosts(t *testing.T) {
	cfg, backend := pprofConfig(t, "")
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	u, _ := url.Parse(admin.URL)
	port := u.Port()

	for _, path := range []string{"/status", "/metrics", "/scaling", "/spare?model=m1", "/debug/pprof/cmdline"} {
		for _, host := range []string{"rebind.attacker.example:" + port, "rebind.attacker.example", "127.0.0.1.nip.io:" + port, "localhost.attacker.example"} {
			code, body := getHost(t, admin.URL+path, host)
			if code != http.StatusForbidden {
				t.Errorf("%s with Host %s: %d %.60q, want 403 admin_host_not_allowed", path, host, code, body)
			} else if _, c, _ := apiErr(t, body); c != "admin_host_not_allowed" {
				t.Errorf("%s with Host %s: code %q, want admin_host_not_allowed", path, host, c)
			}
		}
		for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST.:" + port, "dash.localhost:" + port, "[::1]:" + port, "10.0.0.5:" + port} {
			if code, body := getHost(t, admin.URL+path, host); code != http.StatusOK {
				t.Errorf("%s with Host %s: %d %.100s, want 200", path, host, code, body)
			}
		}
	}
	if code, _ := getHost(t, admin.URL+"/", "rebind.attacker.example:"+port); code != http.StatusOK {
		t.Errorf("the dashboard page under a foreign Host: %d, want 200 (it holds no data, and says why the data is refused)", code)
	}
	// The --pprof listener has the same gate.
	pp := serveOn(t, gw.PprofHandler(), "127.0.0.1")
	if code, body := getHost(t, pp.URL+"/debug/pprof/cmdline", "rebind.attacker.example"); code != http.StatusForbidden || !strings.Contains(body, "admin_host_not_allowed") {
		t.Errorf("--pprof listener under a foreign Host: %d %.100s, want 403", code, body)
	}

	cfg = testConfig(backend)
	cfg.Admin.Token = "s3cret-admin"
	_, gw = startGateway(t, cfg)
	admin = adminServer(t, gw)
	if code, body := getHost(t, admin.URL+"/status", "sluice-admin.internal:9091", "Authorization", "Bearer s3cret-admin"); code != http.StatusOK {
		t.Errorf("with admin.token, under a DNS name: %d %.100s, want 200", code, body)
	}
	if code, _ := getHost(t, admin.URL+"/status", "sluice-admin.internal:9091"); code != http.StatusUnauthorized {
		t.Errorf("with admin.token, no token sent: %d, want 401", code)
	}
}

// The admin listener's data is for the operator who asked: every answer
// past the gate says Cache-Control: no-store, so no cache on the way and
// no browser history keeps tenants, backend URLs, the NATS password or a
// heap profile. Before, /status, /metrics, /worker/v1/queue and pprof
// carried no Cache-Control at all (a heuristic cache may store a 200).
func TestAdminAnswersAreNotStored(t *testing.T) {
	cfg, _ := pprofConfig(t, "tok")
	_, gw := startGateway(t, cfg)
	gw.queueInfo = QueueInfo{Mode: "external", URL: "nats://u:secret@10.0.0.1:4222"}
	admin := adminServer(t, gw)
	for _, path := range []string{"/status", "/metrics", "/scaling", "/spare?model=m1", QueuePath, "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		code, h, _ := get(t, admin.URL+path, "Authorization", "Bearer tok")
		if code != http.StatusOK || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d, Cache-Control %q, want 200 no-store", path, code, h.Get("Cache-Control"))
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, h.Get("X-Content-Type-Options"))
		}
	}
}

// Every admin route states its methods: pprof answered any method (200
// to DELETE /debug/pprof/heap), and a worker call with the wrong method
// was refused by the chain naming /v1/... (the path without its /worker
// prefix), or with 400 for the tenant header when that was missing.
func TestAdminMethodsNamedOnEveryRoute(t *testing.T) {
	cfg, _ := pprofConfig(t, "tok")
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	do := func(method, path string) (int, http.Header, string) {
		return adminDo(t, admin.URL, "tok", method, path, "{}")
	}
	for _, c := range []struct{ method, path, allow, says string }{
		{"DELETE", "/debug/pprof/heap", "GET, HEAD", "DELETE is not allowed for /debug/pprof/heap; use GET"},
		{"POST", "/debug/pprof/", "GET, HEAD", "use GET"},
		{"PUT", "/debug/pprof/symbol", "GET, HEAD, POST", "use GET or POST"},
		{"GET", "/worker/v1/chat/completions", "POST", "GET is not allowed for /worker/v1/chat/completions; use POST"},
		{"DELETE", "/worker/v1/responses", "POST", "DELETE is not allowed for /worker/v1/responses; use POST"},
	} {
		code, h, body := do(c.method, c.path)
		if code != http.StatusMethodNotAllowed || h.Get("Allow") != c.allow || !strings.Contains(body, c.says) {
			t.Errorf("%s %s: %d Allow %q %.160s, want 405 Allow %q saying %q", c.method, c.path, code, h.Get("Allow"), body, c.allow, c.says)
		}
	}
	for _, c := range []struct{ method, path string }{{"GET", "/debug/pprof/heap"}, {"HEAD", "/debug/pprof/cmdline"}, {"POST", "/debug/pprof/symbol"}} {
		if code, _, body := do(c.method, c.path); code != http.StatusOK {
			t.Errorf("%s %s: %d %.100s, want 200", c.method, c.path, code, body)
		}
	}
}

// A page of another site reaches a token-less loopback listener as a
// loopback peer under an IP Host: its <img src=".../debug/pprof/trace?
// seconds=600"> ran a ten-minute trace, unread but run. A browser marks
// such a request (Sec-Fetch-Site: cross-site, or same-site for another
// port of the same host); the listener refuses it. Its own page's
// requests (same-origin), a typed address (none), a link followed to a
// page of its own and non-browser clients (no header) are served as
// before.
func TestAdminRefusesOtherSitesPages(t *testing.T) {
	cfg, _ := pprofConfig(t, "")
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	for _, site := range []string{"cross-site", "same-site"} {
		for _, path := range []string{"/status", "/metrics", "/debug/pprof/cmdline"} {
			code, _, body := get(t, admin.URL+path, "Sec-Fetch-Site", site)
			if code != http.StatusForbidden || !strings.Contains(body, "admin_cross_site") {
				t.Errorf("%s with Sec-Fetch-Site %s: %d %.80q, want 403 admin_cross_site", path, site, code, body)
			}
		}
	}
	if code, _, _ := get(t, admin.URL+"/debug/pprof/cmdline", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "iframe"); code != http.StatusForbidden {
		t.Errorf("framed by another site: %d, want 403", code)
	}
	for _, site := range []string{"same-origin", "none", ""} {
		if code, _, _ := get(t, admin.URL+"/status", "Sec-Fetch-Site", site); code != http.StatusOK {
			t.Errorf("/status with Sec-Fetch-Site %q: %d, want 200", site, code)
		}
	}
	// A link followed from another site's page opens as a page of its own.
	if code, _, _ := get(t, admin.URL+"/metrics", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"); code != http.StatusOK {
		t.Errorf("a link followed to /metrics: %d, want 200", code)
	}
}

// HEAD is allowed wherever GET is on the admin listener, as net/http
// answers it for a GET handler: the headers, no body. /status/stream
// answered HEAD 405 with Allow: GET, where /status, /metrics and the
// rest answer 200; it now answers the stream's headers and returns at
// once (no watcher place taken), and its 405 says Allow: GET, HEAD.
func TestAdminHeadWhereverGet(t *testing.T) {
	cfg, _ := pprofConfig(t, "tok")
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	do := func(method, path string) (int, http.Header, string) {
		return adminDo(t, admin.URL, "tok", method, path, "")
	}
	for _, path := range []string{"/status", "/status/stream", "/metrics", "/scaling", "/spare?model=m1", "/debug/pprof/cmdline", "/"} {
		code, h, body := do(http.MethodHead, path)
		if code != http.StatusOK || body != "" {
			t.Errorf("HEAD %s: %d with %d bytes of body, want 200 with none", path, code, len(body))
		}
		if path == "/status/stream" && h.Get("Content-Type") != "text/event-stream" {
			t.Errorf("HEAD /status/stream: Content-Type %q, want the stream's", h.Get("Content-Type"))
		}
	}
	if n := gw.streams.watchers(); n != 0 {
		t.Errorf("HEAD /status/stream left %d watchers", n)
	}
	// The workers' queue (404 here: no queue) answers HEAD as GET too.
	if code, _, _ := do(http.MethodHead, QueuePath); code == http.StatusMethodNotAllowed {
		t.Errorf("HEAD %s: 405", QueuePath)
	}
	for _, path := range []string{"/status", "/status/stream", "/metrics", QueuePath} {
		if code, h, _ := do(http.MethodPost, path); code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", path, code, h.Get("Allow"))
		}
	}
}
