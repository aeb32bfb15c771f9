package app

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// prefix_affinity's ring builds reach /metrics: one ring for the one
// candidate set, however many requests find it.
func TestPrefixRingBuildsExported(t *testing.T) {
	b1, b2 := backend(t, "b1"), backend(t, "b2")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nmodels:\n  - name: m\n    policy: prefix_affinity\n    backends:\n      - url: %s\n      - url: %s\n", b1.URL, b2.URL)
	writeFile(t, path, src)
	url, admin, cancel, done := startAppAdmin(t, path)
	for range 5 {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"the same long system prompt"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if got := metric(t, admin, "sluice_routing_prefix_rings_built_total"); got != "sluice_routing_prefix_rings_built_total 1" {
		t.Errorf("%q, want 1 ring for 5 requests", got)
	}
	if got := metric(t, admin, "sluice_routing_prefix_ring_cache_resets_total"); got != "sluice_routing_prefix_ring_cache_resets_total 0" {
		t.Errorf("%q, want 0", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
