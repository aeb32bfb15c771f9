package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// createKeyBatch uploads n chat lines and creates a batch of them as
// key's tenant; it returns the batch id.
func createKeyBatch(t *testing.T, url, key string, n int) string {
	t.Helper()
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"q%d"}]}}`+"\n", i, i)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "in.jsonl")
	fw.Write(in.Bytes())
	mw.Close()
	auth := "Bearer " + key
	code, _, b := do(t, http.MethodPost, url+"/v1/files", mw.FormDataContentType(), &form, "Authorization", auth)
	var file struct{ ID string }
	if code != 200 || json.Unmarshal(b, &file) != nil || file.ID == "" {
		t.Fatalf("upload: %d %s", code, b)
	}
	code, _, b = do(t, http.MethodPost, url+"/v1/batches", "application/json",
		strings.NewReader(`{"input_file_id":"`+file.ID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`), "Authorization", auth)
	var batch struct{ ID string }
	if code != 200 || json.Unmarshal(b, &batch) != nil || batch.ID == "" {
		t.Fatalf("create batch: %d %s", code, b)
	}
	return batch.ID
}

// A reload that removes a tenant's last key ends its queued work at once,
// with no worker running (queue.workers 0, no `sluice worker`): the
// sweep's pass fails its queued job api_key_revoked and cancels its batch,
// which the tracker ends cancelled with an error file of every line.
// Before, both waited for a worker to take them: the job stayed queued and
// the batch in_progress for as long as no worker ran. The kept tenant's
// job is untouched; the key given back (a rotation) reads the end state
// through the API.
func TestReloadSweepsARevokedTenantsQueuedWork(t *testing.T) {
	be, calls := countingBackend(t)
	path, dataDir := filepath.Join(t.TempDir(), "sluice.yaml"), t.TempDir()
	both := "{key: sk-gone, tenant: gone}, {key: sk-kept, tenant: kept}"
	noWorkers := "workers: 0\n  worker_disabled: true"
	revokeRecordConfig(t, path, dataDir, be.URL, both, noWorkers)
	a := newApp(t, path)
	tk := newStepTicker()
	a.revokeTicker = tk.tick
	url, _ := serveApp(t, a)
	// The sweep's loop starts busy: its first look finds nothing revoked.
	c := tk.next(t)
	c <- time.Now()
	tk.idle(t, c, time.Now())

	goneLoc, keptLoc := submitAsync(t, url, "sk-gone"), submitAsync(t, url, "sk-kept")
	const lines = 3
	batchID := createKeyBatch(t, url, "sk-gone", lines)

	revokeRecordConfig(t, path, dataDir, be.URL, "{key: sk-kept, tenant: kept}", noWorkers)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	c = tk.next(t) // woken by the reload
	c <- time.Now()
	select { // one pass reads it all, and the loop rests
	case <-tk.stopped:
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("the sweep did not finish its pass")
	}

	a.jobsMu.Lock()
	q := a.jobs
	a.jobsMu.Unlock()
	id := goneLoc[strings.LastIndex(goneLoc, "/")+1:]
	j, err := q.store.Job(context.Background(), "gone", id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusFailed || j.Error == nil || j.Error.Code != jobs.CodeRevoked || j.Attempts != 0 {
		t.Fatalf("gone's job after the sweep: %s %+v attempts %d; want failed %s, attempts 0", j.Status, j.Error, j.Attempts, jobs.CodeRevoked)
	}
	if m := jobState(t, url, keptLoc, "sk-kept"); m["status"] != string(jobs.StatusQueued) {
		t.Fatalf("kept's job: %v, want queued (no worker runs)", m["status"])
	}
	if got := q.store.Stats().Revoked; got != 1 {
		t.Fatalf("revoked jobs counted %d, want 1", got)
	}

	// The key back (a rotation): the batch as its owner reads it.
	revokeRecordConfig(t, path, dataDir, be.URL, "{key: sk-gone-2, tenant: gone}, {key: sk-kept, tenant: kept}", noWorkers)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	var batch map[string]any
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) { // the tracker finalizes
		code, _, b := do(t, http.MethodGet, url+"/v1/batches/"+batchID, "", nil, "Authorization", "Bearer sk-gone-2")
		if code != 200 || json.Unmarshal(b, &batch) != nil {
			t.Fatalf("GET batch: %d %s", code, b)
		}
		if batch["status"] == "cancelled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch: %v, want cancelled", batch["status"])
		}
	}
	counts, _ := batch["request_counts"].(map[string]any)
	errFile, _ := batch["error_file_id"].(string)
	if counts["failed"] != float64(lines) || counts["completed"] != float64(0) || errFile == "" {
		t.Fatalf("cancelled batch: counts %v, error file %q; want %d failed", counts, errFile, lines)
	}
	code, _, b := do(t, http.MethodGet, url+"/v1/files/"+errFile+"/content", "", nil, "Authorization", "Bearer sk-gone-2")
	if code != 200 || strings.Count(string(b), `"batch_cancelled"`) != lines {
		t.Fatalf("error file: %d %s; want %d batch_cancelled lines", code, b, lines)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("backend calls %d, want 0", n)
	}
	if got := q.store.Stats().Revoked; got != 1 {
		t.Fatalf("revoked jobs counted %d after the batch, want still 1", got)
	}
}

// A sweep whose passes fail (the job store away) says so once: one WARN
// line for the outage, the retries at DEBUG. Before, every pass logged a
// WARN, one a second (revokeSweepEvery) for as long as the store stayed
// away: 3,600 lines an hour.
func TestRevokeSweepWarnsOncePerOutage(t *testing.T) {
	be, _ := countingBackend(t)
	path, dataDir := filepath.Join(t.TempDir(), "sluice.yaml"), t.TempDir()
	noWorkers := "workers: 0\n  worker_disabled: true"
	revokeRecordConfig(t, path, dataDir, be.URL, "{key: sk-gone, tenant: gone}, {key: sk-kept, tenant: kept}", noWorkers)
	a, logs := newLoggedApp(t, path, config.Load)
	tk := newStepTicker()
	a.revokeTicker = tk.tick
	serveApp(t, a)
	c := tk.next(t)
	c <- time.Now()
	tk.idle(t, c, time.Now())

	revokeRecordConfig(t, path, dataDir, be.URL, "{key: sk-kept, tenant: kept}", noWorkers)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	c = tk.next(t) // woken by the reload
	a.jobsMu.Lock()
	q := a.jobs
	a.jobsMu.Unlock()
	q.emb.Shutdown() // the store away: every pass fails
	const passes = 6
	for range passes + 1 { // the last send returns once the sixth pass has ended
		c <- time.Now()
	}
	const line = "sweeping the revoked tenants' queued work"
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Fatalf("%d WARN lines over %d failed passes; want 1:\n%s", n, passes, logs.String())
	}
}
