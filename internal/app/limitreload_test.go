package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
		src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
			"auth:\n  keys: [{key: sk-a, tenant: ta}]\n"+
			"rate_limits:\n  per_key: {requests: \"rate=1r/m burst=%d nodelay\"}\n"+
			"models:\n  - name: m1\n    backends:\n      - url: %s\n", burst, be.URL)
		writeFile(t, path, src)
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

// A reload that turns the rate limits off takes their metrics away, and
// one that turns them on again registers the new limiter's. Before, the
// dropped limiter's metrics stayed registered, frozen; the next limiter's
// collided with them ("rate limiter metrics not registered") and its
// checks were counted nowhere until a restart (binary: 93 requests
// refused 429 under load, sluice_ratelimit_checks_total stuck at 3).
func TestReloadLimitsOffAndOnKeepsTheirMetrics(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(limits string) {
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" + limits +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	on := "rate_limits: {global: {requests: \"rate=100r/s burst=100 nodelay\"}}\n"
	write(on)
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	reg := a.deps.Registry.(*prometheus.Registry)
	checks := func() (float64, bool) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "sluice_ratelimit_checks_total" {
				sum := 0.0
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return sum, true
			}
		}
		return 0, false
	}
	send := func(n int) {
		for range n {
			if code, body := chat(srv.URL, "m1"); code != 200 {
				t.Fatalf("%d %s", code, body)
			}
		}
	}
	reload := func(limits string) {
		t.Helper()
		write(limits)
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	send(2)
	if n, _ := checks(); n != 2 {
		t.Fatalf("checks counted %v, want 2", n)
	}
	reload("")
	if n, ok := checks(); ok {
		t.Errorf("limits off: sluice_ratelimit_checks_total still reported (%v) for a limiter gone", n)
	}
	reload(on)
	send(3)
	if n, ok := checks(); !ok || n != 3 {
		t.Fatalf("limits on again, 3 requests: checks counted %v (reported %v), want the new limiter's 3", n, ok)
	}
}
