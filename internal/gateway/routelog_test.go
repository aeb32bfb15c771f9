package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestEveryRouteHasAnAccessLine: the answers outside the inference chain
// (the model list, a model by id, an unknown URL) get an access line with
// the request id the client saw, like every inference request; the probes
// get none. Before, none of them was logged: a scanner's 404s and the id a
// client quoted from a 404 were nowhere in the log.
func TestEveryRouteHasAnAccessLine(t *testing.T) {
	ob := newOKBackend(t)
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	srv, _, logs := loggedGateway(t, cfg)

	type want struct{ method, path, id string }
	var wants []want
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/models"}, {"GET", "/v1/models/no-such-model"}, {"DELETE", "/v1/nothing"}, {"GET", "/healthz"}, {"HEAD", "/readyz"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if !strings.HasPrefix(c.path, "/healthz") && !strings.HasPrefix(c.path, "/readyz") {
			wants = append(wants, want{c.method, c.path, resp.Header.Get("X-Request-Id")})
		}
	}
	lines := strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n")
	if len(lines) != len(wants) {
		t.Fatalf("%d log lines for %d logged requests (probes unlogged):\n%s", len(lines), len(wants), logs.String())
	}
	statuses := []float64{200, 404, 404}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		w := wants[i]
		if rec["msg"] != "request" || rec["request_id"] != w.id || w.id == "" || rec["method"] != w.method ||
			rec["path"] != w.path || rec["status"] != statuses[i] || rec["duration_ms"] == nil {
			t.Errorf("line %d = %s, want an access line for %s %s, id %q, status %v", i, l, w.method, w.path, w.id, statuses[i])
		}
	}
}
