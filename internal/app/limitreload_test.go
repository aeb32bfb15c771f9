package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A reload that changes the rate limits keeps the in-process buckets: a
// key that spent its burst has only what the new limits add. Before, the
// new limiter started from empty buckets, so every reload that touched
// rate_limits (a tenant override added, a burst raised) handed every key,
// tenant and address a fresh burst and token budget.
func TestReloadChangingLimitsKeepsTheBuckets(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(burst int) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n"+
			"auth:\n  keys: [{key: sk-a, tenant: ta}]\n"+
			"rate_limits:\n  per_key: {requests: \"rate=1r/m burst=%d nodelay\"}\n"+
			"models:\n  - name: m1\n    backends:\n      - url: %s\n", burst, be.URL)
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(2) // 3 at once, then one a minute
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	send := func(n int) []int {
		var codes []int
		for range n {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[]}`))
			req.Header.Set("Authorization", "Bearer sk-a")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		return codes
	}
	if got := fmt.Sprint(send(4)); got != "[200 200 200 429]" {
		t.Fatalf("burst=2: %s", got)
	}
	write(3) // one more at once
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(send(4)); got != "[200 429 429 429]" {
		t.Fatalf("after raising burst to 3: %s, want the one request the raise adds", got)
	}
}
