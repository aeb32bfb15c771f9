package app

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
	"github.com/sluice-gw/sluice/internal/testutil/benchpost"
)

// hitBody is bench/cache-hit.sh's request: deterministic, so cacheable.
const hitBody = `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"temperature":0}`

// BenchmarkServeCacheHit is bench/cache-hit.sh's Sluice side in process:
// the server as `sluice serve --model m --backend URL` builds it
// (flag-mode defaults, so forecasting, admission, breaker, health and
// metrics on; the listener's connection caps, framing scanner and
// connection state hooks, the body and send deadlines; access log off as
// --log-level error), every request a cache hit, through real loopback
// connections and a Go client. Compare with BenchmarkServeCacheHitFloor,
// the script's bare net/http handler behind the same client: the
// difference is what Sluice adds per hit (the client's work is in both).
// Run's background loops (forecast ticker, backend scraper, health
// checks) and the job queue are left out: they cost per second, not per
// request, and under callgrind, where a second lasts long, they would
// swamp a per-request count.
func BenchmarkServeCacheHit(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m", Instant: true}))
	defer be.Close()
	cfg := config.Default()
	cfg.Models = []config.Model{{Name: "m", Backends: []config.Backend{{URL: be.URL}}}}
	cfg.Admin.Listen = "off"
	cfg.Queue.Enabled = false
	if err := cfg.ValidateWith(PolicyCheck); err != nil {
		b.Fatal(err)
	}
	a, err := New(&cfg, Source{}, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		b.Fatal(err)
	}
	defer a.release()
	if a.Forecaster() == nil {
		b.Fatal("forecasting is off; the defaults have it on")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sc := cfg.Server
	guarded := a.guard(ln, sc, cfg.Log.Access)
	defer a.unguard()
	srv := newServer(a.gw, guarded, sc, a.log)
	go srv.Serve(guarded) // as Run serves
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/chat/completions"
	for _, want := range []string{"MISS", "HIT"} {
		if got := postOnce(b, url); got != want {
			b.Fatalf("X-Cache %q, want %q", got, want)
		}
	}
	benchpost.Parallel(b, url, hitBody, true)
}

// BenchmarkServeCacheHitFloor is bench/cache-hit.sh's floor (read the
// body, set the headers of a hit, write the cached answer) on a plain
// http.Server, behind BenchmarkServeCacheHit's client.
func BenchmarkServeCacheHitFloor(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m", Instant: true}))
	defer be.Close()
	resp, err := http.Post(be.URL+"/v1/chat/completions", "application/json", strings.NewReader(hitBody))
	if err != nil {
		b.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
		h.Set("Content-Type", "application/json")
		h.Set("X-Cache", "HIT")
		h.Set("Age", "1")
		h.Set("Cache-Control", "private, max-age=300")
		h.Set("X-Sluice-Model", "m")
		w.Write(answer)
	}))
	defer srv.Close()
	benchpost.Parallel(b, srv.URL+"/v1/chat/completions", hitBody, true)
}

// postOnce posts hitBody and returns the answer's X-Cache.
func postOnce(b *testing.B, url string) string {
	resp, err := http.Post(url, "application/json", strings.NewReader(hitBody))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Cache")
}
