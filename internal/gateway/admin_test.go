package gateway

import (
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	return resp.StatusCode, resp.Header, body
}

// The public listener serves /v1/*, /healthz and /readyz only: the
// privileged surfaces answer an OpenAI-shaped 404 there, and are served on
// the admin handler.
func TestPublicListenerHidesAdminSurfaces(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Pprof = true
	srv, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))

	for _, path := range []string{"/status", "/metrics", "/scaling", "/scaling?model=m1", "/spare", "/spare?model=m1", "/debug/pprof/", "/debug/pprof/cmdline", "/dashboard", "/", "/dashboard.js", "/status/stream"} {
		code, _, body := get(t, srv.URL+path)
		if code != http.StatusNotFound {
			t.Errorf("public %s: status %d, want 404", path, code)
			continue
		}
		if _, c, _ := apiErr(t, body); c != "unknown_url" {
			t.Errorf("public %s: code %q", path, c)
		}
		if strings.Contains(body, strings.TrimPrefix(be.URL, "http://")) {
			t.Errorf("public %s leaks the backend address: %s", path, body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/v1/models"} {
		if code, _, _ := get(t, srv.URL+path); code != 200 {
			t.Errorf("public %s: status %d, want 200", path, code)
		}
	}
	for path, want := range map[string]string{
		"/status": `"model": "m1"`, "/metrics": "sluice_requests_total", "/spare?model=m1": "", "/debug/pprof/": "goroutine",
	} {
		code, _, body := get(t, admin.URL+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("admin %s: status %d, body lacks %q", path, code, want)
		}
	}
	if code, _, body := get(t, admin.URL+"/v1/models"); code != 404 {
		t.Errorf("admin /v1/models: status %d (%s), want 404: the API is not on the admin listener", code, body)
	}
}

func TestAdminTokenAndPprofSwitch(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Token = "s3cret-admin"
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)

	for name, hdr := range map[string][]string{
		"missing": nil,
		"wrong":   {"Authorization", "Bearer s3cret-admiN"},
		"prefix":  {"Authorization", "Bearer s3cret"},
		"longer":  {"Authorization", "Bearer s3cret-admin-and-more"},
		"basic":   {"Authorization", "Basic s3cret-admin"},
	} {
		for _, path := range []string{"/metrics", "/status", "/status/stream", "/spare", "/nothing"} {
			code, h, body := get(t, admin.URL+path, hdr...)
			if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s token on %s: status %d, WWW-Authenticate %q", name, path, code, h.Get("WWW-Authenticate"))
				continue
			}
			if _, c, _ := apiErr(t, body); c != "invalid_admin_token" {
				t.Errorf("%s token on %s: code %q", name, path, c)
			}
		}
	}
	ok := []string{"Authorization", "Bearer s3cret-admin"}
	if code, _, body := get(t, admin.URL+"/metrics", ok...); code != 200 || !strings.Contains(body, "sluice_") {
		t.Fatalf("right token: /metrics status %d", code)
	}
	// admin.pprof is off by default: no profiler even with the token.
	if code, _, _ := get(t, admin.URL+"/debug/pprof/", ok...); code != http.StatusNotFound {
		t.Fatalf("pprof off: status %d, want 404", code)
	}
	if !tokenMatches("a", "a") || tokenMatches("", "a") || tokenMatches("a", "b") {
		t.Fatal("tokenMatches is wrong")
	}
}

// GET /worker/v1/queue tells a worker the queue's NATS URL, password
// included, so only with admin.token set and sent; /status shows it with
// the password hidden.
func TestQueueInfoOnAdminListener(t *testing.T) {
	be := newOKBackend(t)
	info := QueueInfo{Mode: "external", URL: "nats://u:secret@10.0.0.1:4222,nats://10.0.0.2:4222"}
	adminWith := func(token string) string {
		cfg := testConfig(be.URL)
		cfg.Admin.Token = token
		_, gw := startGateway(t, cfg)
		gw.queueInfo = info
		return adminServer(t, gw).URL
	}
	resp, _ := http.Get(adminWith("") + QueuePath)
	if body := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "admin_token_required") {
		t.Fatalf("without admin.token: %d %s, want 403", resp.StatusCode, body)
	}
	admin := adminWith("tok")
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, admin+path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	if code, body := get(QueuePath); code != 200 || !strings.Contains(body, `"nats_url": "nats://u:secret@10.0.0.1:4222,nats://10.0.0.2:4222"`) {
		t.Fatalf("with the token: %d %s", code, body)
	}
	if _, body := get("/status"); strings.Contains(body, "secret") || !strings.Contains(body, `"nats_url": "nats://u:xxxxx@10.0.0.1:4222,nats://10.0.0.2:4222"`) {
		t.Fatalf("/status queue: %s", body)
	}
}

// The dashboard page and its assets are served without the token (they
// hold no data; the page asks for the token to read /status/stream), with
// headers that keep them from being framed, sniffed or running anything
// not their own.
func TestDashboardServedWithSecurityHeaders(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Token = "s3cret-admin"
	_, gw := startGateway(t, cfg)
	admin := adminServer(t, gw)
	for path, want := range map[string]string{
		"/":              "text/html",
		"/dashboard.js":  "text/javascript",
		"/dashboard.css": "text/css",
	} {
		code, h, body := get(t, admin.URL+path)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), want) || body == "" {
			t.Errorf("%s: %d %q", path, code, h.Get("Content-Type"))
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", path, h)
		}
		if strings.Contains(body, "s3cret-admin") {
			t.Errorf("%s carries the token", path)
		}
	}
	// No inline script or style for the CSP to refuse: the page loads its
	// own files only.
	_, _, page := get(t, admin.URL+"/")
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || strings.Contains(page, "http") {
		t.Errorf("page has inline code or an outside reference:\n%s", page)
	}
	if code, _, _ := get(t, admin.URL+"/status"); code != http.StatusUnauthorized {
		t.Errorf("/status without the token: %d", code)
	}
}

// A queue URL whose password url.Parse cannot read (a '%' not starting
// an escape) is still shown on /status with the password hidden. Before,
// a URL that did not parse was shown whole.
func TestStatusHidesAQueuePasswordThatDoesNotParse(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Admin.Token = "tok"
	_, gw := startGateway(t, cfg)
	gw.queueInfo = QueueInfo{Mode: "external", URL: "nats://u:50%off@10.0.0.1:4222,nats://10.0.0.2:4222"}
	req, _ := http.NewRequest(http.MethodGet, adminServer(t, gw).URL+"/status", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); strings.Contains(body, "50%off") || !strings.Contains(body, `"nats_url": "nats://u:xxxxx@10.0.0.1:4222,nats://10.0.0.2:4222"`) {
		t.Fatalf("/status queue: %s", body)
	}
}
