package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/config"
)

// closedPort is a loopback address nothing listens on: a Redis or NATS
// that is down.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// attentionConfig is a gateway in the middle of an incident: the issuer's
// key set cannot be fetched, the rate limits' Redis and the job queue's
// NATS are down, and a model, HTML in its name, comes from a file. bad
// puts HTML in admission.max_wait, a reload the gateway refuses.
func attentionConfig(backend, targets, jwks, redis, nats string, bad bool) string {
	wait := "2s"
	if bad {
		wait = `"<img src=x onerror=window.injected=1>"`
	}
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
admission: {max_wait: %s}
auth:
  jwt: {jwks_url: %s, issuer: https://idp.example/, audience: sluice}
rate_limits:
  store: redis
  redis: {addrs: [%q], failure_mode: open}
  per_key: {requests: "rate=100r/s burst=100"}
queue: {url: "nats://%s", data_dir: %q}
forecast: {enabled: false}
models:
  - name: sim-model
    backends: [{url: %s}]
  - name: '<img src=x onerror="window.injected=1">'
    discovery: [{type: file, path: %q}]
`, wait, jwks, redis, nats, filepath.Dir(targets), backend, targets)
}

// During an incident the page lists what needs the operator, from the
// /status fields its tables do not show: the replica not ready and why
// (the issuer's key set never fetched), Redis bypassed, the job queue not
// answering, discovery failing with its error (file:line), and a refused
// reload with its message (file:line). Model names and error text are
// text, never markup. A reload that is applied, and a discovery file
// fixed, take their entries away: nothing stale stays. Before, the page
// showed none of it: a degraded discovery's pool read "all healthy".
func TestDashboardShowsWhatNeedsAttention(t *testing.T) {
	tab, problems := browser(t)
	_, srvs := simPool(t, 1)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "identity provider down", http.StatusInternalServerError)
	}))
	t.Cleanup(jwks.Close)
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.yaml")
	write := func(path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	goodTargets := fmt.Sprintf("- targets: [%q]\n", strings.TrimPrefix(srvs[0].URL, "http://"))
	write(targets, goodTargets)
	redis, nats := closedPort(t), closedPort(t)
	path := filepath.Join(dir, "sluice.yaml")
	write(path, attentionConfig(srvs[0].URL, targets, jwks.URL+"/jwks", redis, nats, false))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, app.Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := a.ListenAdmin("")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Redis is found down by the calls that fail (two in a row bypass it):
	// a few requests, each limited, served in the failure mode.
	for i := 0; i < 3; i++ {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"sim-model","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+adminAddr.String()+"/")); err != nil {
		t.Fatal(err)
	}
	const list = `[...document.querySelectorAll("#alert-list li")]`
	has := func(kind, text string) string {
		return fmt.Sprintf(`%s.some((li) => li.dataset.kind === %q && li.textContent.includes(%q))`, list, kind, text)
	}
	until(t, tab, problems, "the incident listed", `!document.getElementById("alerts").hidden && `+strings.Join([]string{
		has("readiness", "not ready: /readyz answers 503"),
		has("readiness", "the issuer's key set was never fetched"),
		has("jwks", "JWKS unavailable"),
		has("redis", "Redis of rate_limits unreachable"),
		has("jobs", "nats://"+nats),
	}, " && "))

	// Discovery fails (the file no longer parses) and a reload is refused.
	write(targets, "- targets: [unclosed\n")
	write(path, attentionConfig(srvs[0].URL, targets, jwks.URL+"/jwks", redis, nats, true))
	if err := a.Reload(); err == nil {
		t.Fatal("a reload of an invalid admission.max_wait was applied")
	}
	until(t, tab, problems, "discovery failing and the refused reload listed with their file:line",
		strings.Join([]string{
			has("discovery", `<img src=x onerror="window.injected=1">: discovery degraded`),
			has("discovery", "targets.yaml:1"),
			has("config", "config reload refused"),
			has("config", "sluice.yaml:3: admission.max_wait"),
		}, " && "))
	if got := eval[string](t, tab, `document.querySelector('#alert-list li[data-kind="discovery"]').className`); got != "warn" {
		t.Errorf("a degraded discovery whose last backends serve is marked %q, want warn", got)
	}
	const summary = `[...document.querySelectorAll("#backends details")].find((d) => d.dataset.model.startsWith("<img")).querySelector("summary").textContent`
	if got := eval[string](t, tab, summary); !strings.Contains(got, "discovery degraded") {
		t.Errorf("the degraded model's backend panel: %q, want it to say discovery is degraded", got)
	}
	// Names and error text are text: nothing injected, nothing run.
	if !eval[bool](t, tab, `window.injected === undefined && document.querySelectorAll("main img").length === 0`) {
		t.Error("a model name or an error message was put in the page as HTML")
	}

	// Fixed: the file parses again, the config is reloaded. Their entries
	// go; those still true stay.
	write(targets, goodTargets)
	write(path, attentionConfig(srvs[0].URL, targets, jwks.URL+"/jwks", redis, nats, false))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	until(t, tab, problems, "the fixed discovery and the applied reload no longer listed",
		`!`+list+`.some((li) => ["discovery", "config"].includes(li.dataset.kind)) && `+has("jwks", "JWKS unavailable"))
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
