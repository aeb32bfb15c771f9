package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// queue.max_store_bytes reaches the embedded server and the store: with a
// 512KiB bound, uploads through the gateway are refused 507 storage_full
// at 90% of it (so is an async job), /metrics shows the figures, and a
// deleted file makes room for an upload again.
func TestQueueStoreBoundThroughTheGateway(t *testing.T) {
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {data_dir: %s, max_file_bytes: 64KiB, max_store_bytes: 512KiB, workers: 0, worker_disabled: true}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n", t.TempDir(), be.URL)
	writeFile(t, path, src)
	url, admin, cancel, done := startAppAdmin(t, path)
	t.Cleanup(func() {
		cancel()
		if err := stopErr(t, <-done); err != nil {
			t.Error(err)
		}
	})
	line := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}`
	content := []byte(line + strings.Repeat(" ", 48<<10) + "\n")
	upload := func() (int, []byte) {
		var form bytes.Buffer
		mw := multipart.NewWriter(&form)
		mw.WriteField("purpose", "batch")
		fw, _ := mw.CreateFormFile("file", "in.jsonl")
		fw.Write(content)
		mw.Close()
		code, _, b := do(t, http.MethodPost, url+"/v1/files", mw.FormDataContentType(), &form)
		return code, b
	}
	var ids []string
	code, body := 0, []byte(nil)
	for range 50 {
		if code, body = upload(); code != http.StatusOK {
			break
		}
		var f struct{ ID string }
		json.Unmarshal(body, &f)
		ids = append(ids, f.ID)
	}
	if code != http.StatusInsufficientStorage || !bytes.Contains(body, []byte(`"code":"storage_full"`)) || len(ids) < 5 {
		t.Fatalf("after %d uploads: %d %s; want 507 storage_full", len(ids), code, body)
	}
	code, _, body = do(t, http.MethodPost, url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[]}`), "Prefer", "respond-async")
	if code != http.StatusInsufficientStorage || !bytes.Contains(body, []byte(`"code":"storage_full"`)) {
		t.Fatalf("async job on a full store: %d %s; want 507 storage_full", code, body)
	}
	if v := metricValue(t, admin, "sluice_jobs_store_limit_bytes"); v != 512<<10 {
		t.Errorf("sluice_jobs_store_limit_bytes %v, want %d", v, 512<<10)
	}
	if v := metricValue(t, admin, "sluice_jobs_store_bytes"); v < 512<<10*9/10 || v > 512<<10 {
		t.Errorf("sluice_jobs_store_bytes %v, want between the admission line and the bound", v)
	}
	if l := metric(t, admin, `sluice_jobs_store_refused_total{reason="budget"} `); l != `sluice_jobs_store_refused_total{reason="budget"} 2` {
		t.Errorf("refusals: %q, want 2 (an upload, a job)", l)
	}
	if code, _, b := do(t, http.MethodDelete, url+"/v1/files/"+ids[0], "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, b)
	}
	if code, body := upload(); code != http.StatusOK {
		t.Fatalf("upload after a delete: %d %s", code, body)
	}
}

// The default bound (10GiB) on a disk with less room must not let the
// store fill the disk: the embedded queue's bound is lowered to three
// quarters of the data directory's free space (plus what it holds), as
// nats-server's own default is. A bound far above any disk here shows it.
func TestQueueStoreBoundFollowsTheDisk(t *testing.T) {
	dir := t.TempDir()
	free, ok := diskFree(dir)
	if !ok {
		t.Skip("the file system's free space cannot be read here")
	}
	be, _ := countingBackend(t)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {data_dir: %s, max_store_bytes: 1048576GiB, workers: 0, worker_disabled: true}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n", dir, be.URL)
	writeFile(t, path, src)
	_, admin := serveApp(t, newApp(t, path))
	// Other processes write to (or free) the same disk meanwhile: the
	// bound is at most three quarters of the larger free space read before
	// and after the start, plus the new store's few files, and far under
	// the configured 1,048,576 GiB.
	if after, ok := diskFree(dir); ok && after > free {
		free = after // space freed by others meanwhile: the bound may use it
	}
	if v := metricValue(t, admin, "sluice_jobs_store_limit_bytes"); v <= 0 || v > float64(free/4*3+64<<20) {
		t.Errorf("sluice_jobs_store_limit_bytes %v with %d bytes free, want at most three quarters of them", v, free)
	}
}
