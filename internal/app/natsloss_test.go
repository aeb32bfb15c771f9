package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// An external NATS lost after start: every job endpoint answers 503 with
// Retry-After at once (not after a JetStream call timed out: the gateway's
// is set to a minute, so an answer within half of it can only be the
// immediate refusal, however loaded the machine); when NATS returns (same port, same store) they
// recover by themselves, and every job accepted before, during or after
// the outage finishes.
func TestExternalNATSLostAndBack(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		// The gateway's own calls are answered at once: held, the active
		// health check's GET /health (at start, then every 5 s) timed out
		// and took the backend down (fails: 1), and it counted as a job
		// that arrived, so NATS went down with one worker idle and its pull
		// out (seen: arrivals /health and one job).
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			if r.URL.Path == "/health" {
				io.WriteString(w, "ok")
			} else {
				http.NotFound(w, r) // /metrics: no load readings, as before (they timed out)
			}
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // jobs stay running or queued across the outage
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer backend.Close()
	releaseOnce := func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}
	defer releaseOnce()

	storeDir := t.TempDir()
	addr := loopbackAddr(t)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	startNATS := func() *jobs.Embedded {
		e, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: storeDir, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	nats := startNATS()
	defer func() { nats.Shutdown() }()

	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf(`listen: 127.0.0.1:0
log: {access: false}
queue:
  url: nats://%s
  workers: 2
  request_timeout: 1m
models:
  - name: m
    backends:
      - url: %s
        max_concurrency: 8
`, addr, backend.URL)
	writeFile(t, path, src)
	url, stop, done := startApp(t, path)
	defer func() { stop(); <-done }()

	var accepted []string
	for range 4 { // two run (held by the backend), two wait
		accepted = append(accepted, submitOpen(t, url))
	}
	// NATS goes down only once both workers hold a job, so no pull request
	// is outstanding: a message the server hands out as it shuts down is
	// lost with the connection and comes back only after AckWait (15 s,
	// internal/jobs' TestMessageLostAtServerShutdownComesBackWithinAckWait),
	// at-least-once delivery's price that this test is not about.
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatal("the workers did not start two jobs")
		}
	}

	// Both workers hold a job (the backend has it, so its record says
	// running): nothing is out to be handed a message as the server stops.
	running := 0
	for _, loc := range accepted {
		if m := pollJSON(t, url+loc, func(map[string]any) bool { return true }); m["status"] == "running" {
			running++
		}
	}
	if running != 2 {
		t.Fatalf("%d jobs running before NATS goes down, want 2 (two workers, each holding one)", running)
	}

	nats.Shutdown()
	endpoints := []struct{ method, path, ctype, body string }{
		{http.MethodPost, "/v1/chat/completions", "application/json", chatBody},
		{http.MethodGet, accepted[0], "", ""},
		{http.MethodGet, "/v1/files", "", ""},
		{http.MethodGet, "/v1/batches", "", ""},
		{http.MethodPost, "/v1/batches", "application/json", `{"input_file_id":"file-abc","endpoint":"/v1/chat/completions","completion_window":"24h"}`},
		{http.MethodPost, "/v1/files", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--x--\r\n"},
	}
	// The connection notices the server's close at once; allow it a
	// moment to, then every answer must be immediate.
	waitStatus(t, url, endpoints[1].method, endpoints[1].path, http.StatusServiceUnavailable)
	for _, e := range endpoints {
		// Immediate means no round trip to a dead server and no JetStream
		// call timeout (a minute here): a refusal that waited on one
		// misses these 30 s. (Pings notice a silent server in ~15 s, but
		// the store knew at once: the server closed the connection.)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		req, err := http.NewRequestWithContext(ctx, e.method, url+e.path, strings.NewReader(e.body))
		if err != nil {
			t.Fatal(err)
		}
		if e.ctype != "" {
			req.Header.Set("Content-Type", e.ctype)
		}
		req.Header.Set("Prefer", "respond-async")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s %s with NATS down: %v (a refusal waits on no timeout)", e.method, e.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"queue_unavailable"`) {
			t.Fatalf("%s %s with NATS down: %d Retry-After=%q %s", e.method, e.path, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}

	nats = startNATS()
	waitStatus(t, url, http.MethodGet, accepted[0], http.StatusOK) // recovers by itself
	accepted = append(accepted, submitOpen(t, url))
	releaseOnce()
	for _, loc := range accepted {
		pollJSON(t, url+loc, func(m map[string]any) bool {
			if s := m["status"]; s == "failed" || s == "cancelled" {
				t.Fatalf("job %s: %v", loc, m)
			}
			return m["status"] == "succeeded"
		})
	}
}

// submitOpen queues chatBody on an open gateway.
func submitOpen(t *testing.T, url string) string {
	t.Helper()
	code, h, b := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chatBody), "Prefer", "respond-async")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	return h.Get("Location")
}

// waitStatus polls until a request answers want (3 minutes at most: a
// JetStream call lost while NATS comes back waits out the test's one
// minute request_timeout before the next poll).
func waitStatus(t *testing.T, url, method, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, _, _ := do(t, method, url+path, "", nil)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: still %d, want %d", method, path, code, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
