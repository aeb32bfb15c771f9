package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// sendTwoCredentials posts chatBody with the given Authorization values
// (each its own header line) and extra headers beyond them (pad), so both
// ways the chain reads its headers (requestHeaders: a walk up to
// onePassMax entries, lookups past it) are exercised.
func sendTwoCredentials(t *testing.T, url string, pad int, auth ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	for i := range pad {
		req.Header.Set(fmt.Sprintf("X-Pad-%d", i), "x")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readAll(t, resp)
}

// Authorization has one value (RFC 9110): with keys configured, a request
// with two is refused whichever comes first, the listed key or not, rather
// than judged by the first (a proxy before the gateway or a backend after
// it might read the other). In open mode no key is checked, so two change
// nothing. The admin listener refuses two as well.
func TestTwoAuthorizationHeadersRefused(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{Keys: []config.Tenant{{Key: "sk-good", Tenant: "team"}}}
	cfg.Admin.Token = "s3cret-admin"
	srv, gw := startGateway(t, cfg)
	url := srv.URL + "/v1/chat/completions"
	for _, pad := range []int{0, onePassMax + 1} {
		for _, pair := range [][]string{{"Bearer sk-good", "Bearer sk-bad"}, {"Bearer sk-bad", "Bearer sk-good"}, {"Bearer sk-good", "Bearer sk-good"}} {
			code, body := sendTwoCredentials(t, url, pad, pair...)
			if code != http.StatusUnauthorized {
				t.Fatalf("pad %d, %q: status %d, want 401", pad, pair, code)
			}
			if _, c, msg := apiErr(t, body); c != "invalid_api_key" || !strings.Contains(msg, "more than one Authorization header") {
				t.Fatalf("pad %d, %q: code %q, message %q", pad, pair, c, msg)
			}
		}
		if code, _ := sendTwoCredentials(t, url, pad, "Bearer sk-good"); code != 200 {
			t.Fatalf("pad %d, one listed key: status %d", pad, code)
		}
	}

	admin := adminServer(t, gw)
	req, _ := http.NewRequest(http.MethodGet, admin.URL+"/metrics", nil)
	req.Header.Add("Authorization", "Bearer s3cret-admin")
	req.Header.Add("Authorization", "Bearer other")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "invalid_admin_token") {
		t.Fatalf("admin with two tokens: %d %s", resp.StatusCode, body)
	}

	open, _ := startGateway(t, testConfig(be.URL))
	if code, _ := sendTwoCredentials(t, open.URL+"/v1/chat/completions", 0, "Bearer a", "Bearer b"); code != 200 {
		t.Fatalf("open mode, two invented keys: status %d, want 200", code)
	}
}
