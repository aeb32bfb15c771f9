package app

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQueueDiskRefusingWritesAtStart: a gateway whose embedded queue's
// data directory refuses writes at start (here a file size limit on the
// process, as a full or read-only disk) starts and serves live traffic;
// async jobs answer 503 with Retry-After; once the directory takes writes
// the queue opens by itself and jobs are accepted. Before, the start
// failed ("queue: jobs: creating stream ...: no space left on device"),
// taking inference down with the job store.
func TestQueueDiskRefusingWritesAtStart(t *testing.T) {
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nforecast: {snapshot: \"off\"}\nqueue: {data_dir: %s, workers: 0, worker_disabled: true}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n", t.TempDir(), be.URL)
	writeFile(t, path, src)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 1, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(restore)
	url, _, cancel, done := startAppAdmin(t, path)
	t.Cleanup(func() {
		cancel()
		if err := stopErr(t, <-done); err != nil {
			t.Error(err)
		}
	})
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	if code, _, body := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chat)); code != http.StatusOK {
		t.Fatalf("live request with the queue's disk refusing writes: %d %s", code, body)
	}
	code, hdr, body := do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chat), "Prefer", "respond-async")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("async job with the queue's disk refusing writes: %d Retry-After %q %s; want 503 with Retry-After", code, hdr.Get("Retry-After"), body)
	}
	restore()
	deadline := time.Now().Add(60 * time.Second) // the retry backs off 1s, 2s, 4s ... 30s
	for {
		code, _, body = do(t, http.MethodPost, url+"/v1/chat/completions", "application/json", strings.NewReader(chat), "Prefer", "respond-async")
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("async job once the disk takes writes: %d %s; want 202", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
