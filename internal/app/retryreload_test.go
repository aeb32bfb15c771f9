package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// A reload keeps the retry budget: a request whose retry the spent
// budget refuses is refused it after the reload too. Before, every
// rebuild (a reload, or discovery finding other backends) made a new
// budget holding min_per_second retries, so a gateway reloaded during an
// outage retried every failure (binary: 20 requests on a pool with one
// dead backend, retry {budget_ratio: 0.01, min_per_second: 1}: 7 answered
// 502 without reloads, 0 with a reload before each).
func TestReloadKeepsTheRetryBudget(t *testing.T) {
	var tries atomic.Int64
	busy := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if r.URL.Path == "/v1/chat/completions" { // not the health checks
				tries.Add(1)
			}
			http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
		}))
		t.Cleanup(s.Close)
		return s
	}
	b1, b2 := busy(), busy()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write := func(comment string) {
		src := fmt.Sprintf("# %s\nlisten: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n"+
			"retry: {attempts: 2, budget_ratio: 0.01, min_per_second: 1, hedge_factor: 0}\n"+
			"health: {max_fails: 0, active: {interval: 0s}}\nbreaker: {enabled: false}\nadmission: {enabled: false}\n"+
			"models:\n  - name: m1\n    backends:\n      - url: %s\n      - url: %s\n", comment, b1.URL, b2.URL)
		writeFile(t, path, src)
	}
	write("first")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// A clock that stands still: the budget's floor adds nothing between
	// requests, so what a request may retry is what the budget holds.
	at := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	a, err := newWithClock(cfg, Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	send := func() int64 {
		t.Helper()
		before := tries.Load()
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m1","messages":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return tries.Load() - before
	}
	// The budget starts with min_per_second (1): the first request's
	// retry spends it; the second has 0.02 saved, no retry.
	if got := fmt.Sprint(send(), send()); got != "2 1" {
		t.Fatalf("tries of the first two requests: %s, want 2 1", got)
	}
	for i := range 3 {
		write(fmt.Sprint("reload ", i)) // retry.* unchanged
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		if n := send(); n != 1 {
			t.Fatalf("after reload %d: the request was tried %d times, want 1 (the spent budget holds no retry)", i+1, n)
		}
	}
}
