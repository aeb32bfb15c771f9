package app

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// upstream_client picks the client for http:// backends: the lean one
// (the default) carries every request on one kept-alive connection and
// counts it in its pool metrics; net/http leaves those metrics at zero.
func TestUpstreamClientFromConfig(t *testing.T) {
	for _, tc := range []struct{ line, opened, reused, limit string }{
		{"", "sluice_upstream_connections_opened_total 1", "sluice_upstream_connections_reused_total 2", "sluice_upstream_idle_connections_limit 4096"},
		{"upstream_client: net/http\n", "sluice_upstream_connections_opened_total 0", "sluice_upstream_connections_reused_total 0", "sluice_upstream_idle_connections_limit 0"},
	} {
		be := backend(t, "b1")
		path := filepath.Join(t.TempDir(), "sluice.yaml")
		src := fmt.Sprintf("%slisten: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", tc.line, be.URL)
		writeFile(t, path, src)
		url, admin, cancel, done := startAppAdmin(t, path)
		for range 3 {
			if code, body := chat(url, "m"); code != http.StatusOK || !strings.Contains(body, "b1") {
				t.Fatalf("%q: %d %s", tc.line, code, body)
			}
		}
		if got := metric(t, admin, "sluice_upstream_connections_opened_total"); got != tc.opened {
			t.Errorf("%q: %q, want %q", tc.line, got, tc.opened)
		}
		if got := metric(t, admin, "sluice_upstream_connections_reused_total"); got != tc.reused {
			t.Errorf("%q: %q, want %q", tc.line, got, tc.reused)
		}
		if got := metric(t, admin, "sluice_upstream_idle_connections_limit"); got != tc.limit {
			t.Errorf("%q: %q, want %q", tc.line, got, tc.limit)
		}
		if got := metric(t, admin, "sluice_upstream_connections_pool_full_total"); got != "sluice_upstream_connections_pool_full_total 0" {
			t.Errorf("%q: %q, want 0 closed for a full pool", tc.line, got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
