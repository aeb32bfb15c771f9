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

	for _, path := range []string{"/status", "/metrics", "/scaling", "/scaling?model=m1", "/spare", "/spare?model=m1", "/debug/pprof/", "/debug/pprof/cmdline", "/dashboard"} {
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
		for _, path := range []string{"/metrics", "/status", "/spare", "/nothing"} {
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
