package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

const testAdminToken = "admin-token-for-tests-0123456789"

// startTenantApp runs a gateway with two keyed tenants limited to one
// request a minute each, and the embedded queue listening on natsAddr; it
// returns the public and the admin base URLs.
func startTenantApp(t *testing.T, backend, natsAddr string, ownWorkers bool) (url, admin string) {
	t.Helper()
	workers := "workers: 0\n  worker_disabled: true"
	if ownWorkers {
		workers = "workers: 4"
	}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
`+noProbes+`log: {access: false}
admin: {token: %s}
auth:
  require_key: true
  keys:
    - {key: k-acme, tenant: "acme corp/ü"}
    - {key: k-other, tenant: other}
rate_limits:
  per_tenant: {requests: "rate=1r/m"}
queue:
  data_dir: %s
  listen: %s
  %s
models:
  - name: m
    backends:
      - url: %s
`, testAdminToken, t.TempDir(), natsAddr, workers, backend)
	writeFile(t, path, src)
	url, admin, stop, done := startAppAdmin(t, path)
	t.Cleanup(func() {
		stop()
		<-done
	})
	return url, admin
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

// submitAsync queues chatBody as key's tenant, waiting for the queue to
// connect, and returns the job's location.
func submitAsync(t *testing.T, url, key string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody),
			"Prefer", "respond-async", "Authorization", "Bearer "+key)
		if code == http.StatusAccepted {
			return h.Get("Location")
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("submit: %d %s", code, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobState reads a job as key's tenant.
func jobState(t *testing.T, url, loc, key string) map[string]any {
	t.Helper()
	code, _, b := do(t, http.MethodGet, url+loc, "", nil, "Authorization", "Bearer "+key)
	var m map[string]any
	if code != http.StatusOK || json.Unmarshal(b, &m) != nil {
		t.Fatalf("GET %s: %d %s", loc, code, b)
	}
	return m
}

func waitJob(t *testing.T, url, loc, key string, done func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := jobState(t, url, loc, key)
		if done(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %v", loc, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func syncChat(t *testing.T, url, key string) int {
	t.Helper()
	code, _, _ := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody),
		"Authorization", "Bearer "+key)
	return code
}

// A job run by the gateway's own workers is charged to its tenant when it
// runs (and the submission is not): after acme's job ran, acme's one
// request a minute is spent; other's is not.
func TestAsyncJobChargedToItsTenant(t *testing.T) {
	be, calls := countingBackend(t)
	url, _ := startTenantApp(t, be.URL, loopbackAddr(t), true)
	loc := submitAsync(t, url, "k-acme")
	waitJob(t, url, loc, "k-acme", func(m map[string]any) bool { return m["status"] == "succeeded" })
	if code := syncChat(t, url, "k-acme"); code != http.StatusTooManyRequests {
		t.Fatalf("acme after its job ran: %d, want 429 (the job is charged to acme)", code)
	}
	if code := syncChat(t, url, "k-other"); code != http.StatusOK {
		t.Fatalf("other: %d, want 200", code)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("backend calls %d, want 2", n)
	}
}

// A separate worker runs jobs as their tenant through the gateway's admin
// listener (admin.token authenticates it; X-Sluice-Job-Tenant names the
// tenant); a job its tenant's limit refuses goes back to the queue,
// neither failed nor counted as an attempt.
func TestSeparateWorkerRunsJobsAsTheirTenant(t *testing.T) {
	be, calls := countingBackend(t)
	natsAddr := loopbackAddr(t)
	url, admin := startTenantApp(t, be.URL, natsAddr, false)
	first := submitAsync(t, url, "k-acme") // the queue is up

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jobs.Open(ctx, jobs.Options{URL: "nats://" + natsAddr, Name: "test-worker", NoTracker: true,
		BusyDelay: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	wctx, stopWorker := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- store.RunWorker(wctx, jobs.WorkerOptions{Concurrency: 2, PollWait: 100 * time.Millisecond, Grace: time.Second,
			Executor: &jobs.HTTPExecutor{Admin: admin, Token: testAdminToken}})
	}()
	defer func() { stopWorker(); <-done }()

	waitJob(t, url, first, "k-acme", func(m map[string]any) bool { return m["status"] == "succeeded" })
	// acme's minute is spent: its next job is refused by its limit and
	// goes back to the queue.
	retried := store.Stats().Retried
	second := submitAsync(t, url, "k-acme")
	deadline := time.Now().Add(30 * time.Second)
	for store.Stats().Retried == retried {
		if time.Now().After(deadline) {
			t.Fatal("the throttled job was never handed back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := jobState(t, url, second, "k-acme")
	if m["status"] != "queued" || m["attempts"] != float64(0) || m["error"] != nil {
		t.Fatalf("throttled job: %v, want queued with no attempt counted", m)
	}
	if code := syncChat(t, url, "k-acme"); code != http.StatusTooManyRequests {
		t.Fatalf("acme: %d, want 429 (its job was charged to it, not to the worker)", code)
	}
	if code := syncChat(t, url, "k-other"); code != http.StatusOK {
		t.Fatalf("other: %d, want 200", code)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("backend calls %d, want 2 (acme's job, other's request)", n)
	}
}

// The public listener never believes X-Sluice-Job-Tenant, whatever else
// the request carries (the admin token included): 400, naming the header.
// The admin listener's worker route believes it with admin.token only,
// and then runs the request as the named tenant, with no API key.
func TestOnlyTheAdminWorkerRouteAssertsATenant(t *testing.T) {
	be, calls := countingBackend(t)
	url, admin := startTenantApp(t, be.URL, loopbackAddr(t), false)
	for _, hdr := range [][]string{
		{"X-Sluice-Job-Tenant", "other", "Authorization", "Bearer k-acme"},
		{"X-Sluice-Job-Tenant", "other", "Authorization", "Bearer " + testAdminToken},
		{"X-Sluice-Job-Tenant", "other", "X-Sluice-Worker-Token", testAdminToken, "Authorization", "Bearer k-acme"},
	} {
		code, _, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody), hdr...)
		var e struct {
			Error struct{ Param, Code string }
		}
		json.Unmarshal(b, &e)
		if code != http.StatusBadRequest || e.Error.Param != "X-Sluice-Job-Tenant" || e.Error.Code != "invalid_worker_assertion" {
			t.Fatalf("public listener, %v: %d %s", hdr, code, b)
		}
	}
	for _, auth := range []string{"", "Bearer k-other", "Bearer " + testAdminToken + "x"} {
		code, _, b := do(t, http.MethodPost, admin+"/worker/v1/chat/completions", "application/json", strings.NewReader(chatBody),
			"X-Sluice-Job-Tenant", "other", "Authorization", auth)
		if code != http.StatusUnauthorized {
			t.Fatalf("admin worker route with %q: %d %s, want 401", auth, code, b)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("backend calls %d, want 0", n)
	}
	code, _, b := do(t, http.MethodPost, admin+"/worker/v1/chat/completions", "application/json", strings.NewReader(chatBody),
		"X-Sluice-Job-Tenant", "other", "Authorization", "Bearer "+testAdminToken)
	if code != http.StatusOK {
		t.Fatalf("admin worker route with the token: %d %s", code, b)
	}
	if code := syncChat(t, url, "k-other"); code != http.StatusTooManyRequests {
		t.Fatalf("other after a job ran as it: %d, want 429", code)
	}
	if code := syncChat(t, url, "k-acme"); code != http.StatusOK {
		t.Fatalf("acme: %d, want 200 (the job was charged to other)", code)
	}
}

// Without admin.token the admin listener is open to whoever reaches it, so
// its worker route refuses to assert a tenant at all.
func TestWorkerRouteNeedsAnAdminToken(t *testing.T) {
	be, calls := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nmodels:\n  - name: m\n    backends:\n      - url: %s\n", be.URL)
	writeFile(t, path, src)
	_, admin, stop, done := startAppAdmin(t, path)
	defer func() { stop(); <-done }()
	code, _, b := do(t, http.MethodPost, admin+"/worker/v1/chat/completions", "application/json", strings.NewReader(chatBody),
		"X-Sluice-Job-Tenant", "other")
	if code != http.StatusForbidden || !strings.Contains(string(b), "admin_token_required") || calls.Load() != 0 {
		t.Fatalf("worker route without admin.token: %d %s (backend calls %d)", code, b, calls.Load())
	}
}
