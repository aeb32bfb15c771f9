package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Every access line, inference or not, starts with the same fields under
// the same names: request_id, method, path, status, duration_ms and client,
// the address after trusted-proxy handling (here the one the trusted
// proxy forwards, not the proxy's). Before, the inference line had no
// method, no line had the client (nor, until 2026-12-06, the
// User-Agent), and a Responses follow-up refused
// before its identify (an unknown sub-route, a method) had no line.
func TestAccessLinesShareTheirCoreFields(t *testing.T) {
	ob := newOKBackend(t)
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	cfg.Auth.TrustedProxies = []string{"127.0.0.0/8", "::1/128"}
	srv, _, logs := loggedGateway(t, cfg)
	const client = "203.0.113.7"
	// A User-Agent of quotes, a non-ASCII rune and 600 bytes more: on the
	// line escaped (the line stays one JSON object) and clipped.
	ua := `sdk/1.0 "quoted" \ é ` + strings.Repeat("a", 600)
	reqs := []struct{ method, path string }{
		{"POST", "/v1/chat/completions"}, {"GET", "/v1/chat/completions"}, {"GET", "/v1/models"},
		{"GET", "/v1/models/no-such-model"}, {"DELETE", "/v1/nothing"}, {"GET", "/v1/responses/resp_x"},
		{"GET", "/v1/responses/resp_x/nothing"}, {"PUT", "/v1/responses/resp_x"},
	}
	ids := map[string]string{}
	for _, c := range reqs {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(chatBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		ids[resp.Header.Get("X-Request-Id")] = c.method + " " + c.path
	}
	seen := 0
	for _, l := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if rec["msg"] != "request" {
			continue
		}
		id, _ := rec["request_id"].(string)
		route, ok := ids[id]
		if !ok {
			t.Errorf("access line with an unknown request_id: %s", l)
			continue
		}
		seen++
		method, path, _ := strings.Cut(route, " ")
		if rec["method"] != method || rec["path"] != path || rec["status"] == nil || rec["duration_ms"] == nil || rec["client"] != client {
			t.Errorf("%s: %s, want request_id, method, path, status, duration_ms and client %q", route, l, client)
		}
		if got, _ := rec["user_agent"].(string); got != telemetry.Clip(ua) || len(got) > telemetry.MaxLogValue+20 {
			t.Errorf("%s: user_agent %q, want the User-Agent clipped: %q", route, got, telemetry.Clip(ua))
		}
	}
	if seen != len(reqs) {
		t.Errorf("%d access lines for %d requests:\n%s", seen, len(reqs), logs.String())
	}
}
