package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// revokeRecordConfig writes a config of the keys (YAML flow entries), the
// embedded queue in dataDir with workers (YAML under queue), and the
// model m on be.
func revokeRecordConfig(t *testing.T, path, dataDir, be, keys, workers string) {
	t.Helper()
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
auth:
  require_key: true
  keys: [%s]
queue:
  data_dir: %s
  %s
`+noProbes+`models:
  - name: m
    backends:
      - url: %s
`, keys, dataDir, workers, be)
	writeFile(t, path, src)
}

// A reload that removes a tenant's last key records the revocation in
// the job store, so a gateway restarted with the key removed refuses the
// tenant's queued jobs too. Before, the revocation lived in the memory of
// the process that reloaded: the restarted gateway ran the job on the
// backend and it ended succeeded. The tenant that keeps its key is
// untouched.
func TestRestartedGatewayRefusesARevokedTenantsJobs(t *testing.T) {
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/chat/completions" { // not the health probes
			calls.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer be.Close()
	path, dataDir := filepath.Join(t.TempDir(), "sluice.yaml"), t.TempDir()
	both := "{key: sk-gone, tenant: gone}, {key: sk-kept, tenant: kept}"
	kept := "{key: sk-kept, tenant: kept}"
	noWorkers := "workers: 0\n  worker_disabled: true"

	revokeRecordConfig(t, path, dataDir, be.URL, both, noWorkers)
	a := roomToStop(newApp(t, path)) // the restart opens its store
	url, _, stop, done := runApp(t, a)
	goneLoc, keptLoc := submitAsync(t, url, "sk-gone"), submitAsync(t, url, "sk-kept")
	revokeRecordConfig(t, path, dataDir, be.URL, kept, noWorkers)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.release()

	// The restart: the same store, the key still removed, workers on.
	revokeRecordConfig(t, path, dataDir, be.URL, kept, "workers: 2")
	b := newApp(t, path)
	defer b.release()
	url, _ = serveApp(t, b)
	waitJob(t, url, keptLoc, "sk-kept", func(m map[string]any) bool { return m["status"] == string(jobs.StatusSucceeded) })
	id := goneLoc[strings.LastIndex(goneLoc, "/")+1:]
	gone := terminalJob(t, b, "gone", id)
	if gone.Status != jobs.StatusFailed || gone.Error == nil || gone.Error.Code != jobs.CodeRevoked || calls.Load() != 1 {
		t.Fatalf("after the restart, gone's job: %s %+v, %d backend calls; want failed %s and 1 call (kept's)",
			gone.Status, gone.Error, calls.Load(), jobs.CodeRevoked)
	}
}

// A reload that removes a JWT issuer records its token namespace in the
// job store, so a gateway restarted with the issuer removed refuses the
// queued jobs of the tenants its tokens named ("jwt:acme"), as a removed
// key's are. Before, the record held keys' tenants only and the
// restarted gateway ran the job on the backend (succeeded). The sweep
// that would end the job at the reload is held (its ticker never ticks),
// as when the gateway stops before it comes to the job.
func TestRestartedGatewayRefusesARemovedIssuersJobs(t *testing.T) {
	restartAfterIssuerRemoved(t, false)
}

// TestIssuerGivenBackByRestartRunsItsJobs: the namespace's record stays
// in the store after a restart that gives the issuer back (a start cannot
// tell a give-back from a file lagging behind another replica's
// revocation, so it clears nothing), but a gateway whose config has the
// issuer never reads it: the queued job of its token tenant runs. A guard
// (it passes on the code before branch keyrot too): the record refuses
// only on a replica that does not trust the issuer.
func TestIssuerGivenBackByRestartRunsItsJobs(t *testing.T) {
	restartAfterIssuerRemoved(t, true)
}

// restartAfterIssuerRemoved queues a token tenant's job, reloads the
// issuer away with the sweep held, and restarts on the same store, the
// issuer given back or not: the job runs, or is refused by the record.
func restartAfterIssuerRemoved(t *testing.T, givenBack bool) {
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/v1/chat/completions" { // not the health probes
			calls.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer be.Close()
	path, dataDir := filepath.Join(t.TempDir(), "sluice.yaml"), t.TempDir()
	secret := strings.Repeat("s", 32)
	const withJWT, kept = true, false
	noWorkers := "workers: 0\n  worker_disabled: true"
	write := func(jwt bool, workers string) {
		revokeRecordConfig(t, path, dataDir, be.URL, "{key: sk-kept, tenant: kept}", workers)
		if jwt {
			b, _ := os.ReadFile(path)
			src := strings.Replace(string(b), "queue:", "  jwt: {issuer: https://corp.test/, audience: sluice, algorithms: [HS256], hmac_secret: "+secret+"}\nqueue:", 1)
			writeFile(t, path, src)
		}
	}
	now := time.Now()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://corp.test/", "aud": "sluice", "sub": "acme",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}

	write(withJWT, noWorkers)
	// The restart opens its store.
	a := roomToStop(newApp(t, path))
	a.revokeTicker = func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} } // no sweep
	url, _, stop, done := runApp(t, a)
	tokenLoc, keptLoc := submitAsync(t, url, token), submitAsync(t, url, "sk-kept")
	write(kept, noWorkers)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.release()

	// The restart: the same store, the issuer still removed (or given
	// back), workers on.
	write(givenBack, "workers: 2")
	b := newApp(t, path)
	defer b.release()
	url, _ = serveApp(t, b)
	waitJob(t, url, keptLoc, "sk-kept", func(m map[string]any) bool { return m["status"] == string(jobs.StatusSucceeded) })
	id := tokenLoc[strings.LastIndex(tokenLoc, "/")+1:]
	gone := terminalJob(t, b, "jwt:acme", id)
	if givenBack {
		if gone.Status != jobs.StatusSucceeded || calls.Load() != 2 {
			t.Fatalf("after a restart giving the issuer back, jwt:acme's job: %s %+v, %d backend calls; want succeeded and 2 calls",
				gone.Status, gone.Error, calls.Load())
		}
		return
	}
	if gone.Status != jobs.StatusFailed || gone.Error == nil || gone.Error.Code != jobs.CodeRevoked || calls.Load() != 1 {
		t.Fatalf("after the restart, jwt:acme's job: %s %+v, %d backend calls; want failed %s and 1 call (kept's)",
			gone.Status, gone.Error, calls.Load(), jobs.CodeRevoked)
	}
}

// terminalJob waits for tenant's job id in a's store to end (30 s, a hang
// guard; the store is looked up each turn, as a's job queue may start
// after it serves) and returns it.
func terminalJob(t *testing.T, a *App, tenant, id string) *jobs.Job {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		a.jobsMu.Lock()
		q := a.jobs
		a.jobsMu.Unlock()
		if q != nil {
			j, err := q.store.Job(context.Background(), tenant, id)
			if err != nil {
				t.Fatal(err)
			}
			if j.Status.Terminal() {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's job %s did not end", tenant, id)
		}
	}
}
