package app

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// weightedConfig writes a weighted pool over urls with the given weights,
// active probes off.
func weightedConfig(t *testing.T, path string, urls []string, weights ...int) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n" + noProbes)
	sb.WriteString("models:\n  - name: m1\n    policy: weighted\n    backends:\n")
	for i, u := range urls {
		fmt.Fprintf(&sb, "      - {url: %s, weight: %d}\n", u, weights[i])
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedBy sends n chats and returns the backends' names in order.
func servedBy(t *testing.T, url string, n int) string {
	t.Helper()
	var out []string
	for range n {
		code, body := chat(url, "m1")
		if code != 200 {
			t.Fatalf("chat: %d %s", code, body)
		}
		out = append(out, body[len(`{"served_by":"`):len(body)-2])
	}
	return strings.Join(out, " ")
}

// Smooth weighted round robin gives nginx's sequence for weights 5,1,1,
// and a weight edited in a reload takes effect at once: the backend is
// the same server, not a new one to slow-start (it got a tenth of its new
// weight for slow_start, 30 s: weights 2,1,1 served 1:1:1).
func TestWeightedSequenceAndWeightChangeOnReload(t *testing.T) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	urls := []string{a.URL, b.URL, c.URL}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	weightedConfig(t, path, urls, 5, 1, 1)
	app := newApp(t, path)
	defer app.release()
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()

	if got, want := servedBy(t, srv.URL, 14), "a a b a c a a a a b a c a a"; got != want {
		t.Fatalf("weights 5,1,1 served %q, want nginx's %q", got, want)
	}

	weightedConfig(t, path, urls, 2, 1, 1)
	if err := app.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := servedBy(t, srv.URL, 8), "a b c a a b c a"; got != want {
		t.Fatalf("after a reload to weights 2,1,1: %q, want %q", got, want)
	}
	if f := backendOf(app, a.URL).RampFactor(); f != 1 {
		t.Errorf("a, its weight edited, slow-starts (ramp %v)", f)
	}
}

// A backend of weight 1 joining a weighted pool in a reload slow-starts
// with a tenth of a turn: over 63 picks next to two of weight 1 it gets
// 3 (0.1 / 2.1), where the rounded integer weight gave it a full third
// (21) from the start. slow_start is an hour, so the ramp stays near 0.1.
func TestWeightedSlowStartOfWeightOne(t *testing.T) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	weightedConfig(t, path, []string{a.URL, b.URL}, 1, 1)
	app := newApp(t, path)
	defer app.release()
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()

	weightedConfig(t, path, []string{a.URL, b.URL, c.URL}, 1, 1, 1)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withWindow := strings.Replace(string(src), "    policy: weighted\n", "    policy: weighted\n    slow_start: 1h\n", 1)
	writeFile(t, path, withWindow)
	if err := app.Reload(); err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for _, name := range strings.Fields(servedBy(t, srv.URL, 63)) {
		served[name]++
	}
	if served["c"] < 2 || served["c"] > 4 {
		t.Fatalf("slow-starting c served %d of 63 (a %d, b %d), want about 3", served["c"], served["a"], served["b"])
	}
}
