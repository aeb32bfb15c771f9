package app

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// A reload that leaves a round-robin pool's backends as they were keeps
// its position: requests between reloads go a, b, c, a. Before, every
// reload built a new picker at the first backend, so with a reload after
// each request every one went to a (measured through the binary: 4 of 4
// on the first of three backends, a SIGHUP after each).
func TestRoundRobinKeepsItsPlaceAcrossReloads(t *testing.T) {
	names := []string{"a", "b", "c"}
	var urls []string
	for _, n := range names {
		urls = append(urls, backend(t, n).URL)
	}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(level string) {
		src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false, level: %s}\nqueue: {enabled: false}\n"+
			"models:\n  - name: m1\n    policy: round_robin\n    backends:\n      - url: %s\n      - url: %s\n      - url: %s\n",
			level, urls[0], urls[1], urls[2])
		writeFile(t, path, src)
	}
	write("info")
	a := newApp(t, path)
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	for i, want := range []string{"a", "b", "c", "a", "b"} {
		code, body := chat(srv.URL, "m1")
		if code != 200 || !strings.Contains(body, `"served_by":"`+want+`"`) {
			t.Fatalf("request %d after %d reloads: %d %s, want served by %s", i+1, i, code, body, want)
		}
		// A reload that changes something else (the log level), and one
		// that changes nothing, alike.
		write([]string{"debug", "info"}[i%2])
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}
