package batchapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestStoreFullRefusals: on a store at its bound, an upload, an async job
// and a batch are each refused 507 storage_full (an OpenAI error object,
// no NATS text, no Retry-After and x-should-retry: false: space frees only
// as files are deleted or retention expires); deleting a file lets uploads in again.
func TestStoreFullRefusals(t *testing.T) {
	e := newEnv(t, envOptions{maxStoreBytes: 512 << 10, maxFileBytes: 64 << 10})
	input := e.uploadOK(chatFile("a"))
	// One valid line padded to 48KiB: about 9 fit under the 90% line.
	content := []byte(chatLine("pad", "m1") + strings.Repeat(" ", 48<<10) + "\n")
	var stored []string
	var full response
	for range 50 {
		r := e.upload(content)
		if r.status != http.StatusOK {
			full = r
			break
		}
		var f struct{ ID string }
		r.json(t, &f)
		stored = append(stored, f.ID)
	}
	if len(stored) < 5 {
		t.Fatalf("only %d files stored before the refusal: %d %s", len(stored), full.status, full.body)
	}
	wantStorageFull(t, "upload", full)
	wantStorageFull(t, "async job", e.postJSON("/async/v1/chat/completions", map[string]any{"model": "m1"}))
	wantStorageFull(t, "batch", e.postJSON("/v1/batches", map[string]any{"input_file_id": input.ID,
		"endpoint": "/v1/chat/completions", "completion_window": "24h"}))

	if r := e.do(e.tenant, http.MethodDelete, "/v1/files/"+stored[0], "", nil); r.status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	e.uploadOK(content)
}

func wantStorageFull(t *testing.T, what string, r response) {
	t.Helper()
	e := r.wantError(t, http.StatusInsufficientStorage)
	if e.Error.Code == nil || *e.Error.Code != "storage_full" || strings.Contains(e.Error.Message, "nats") {
		t.Fatalf("%s: %s; want code storage_full and no NATS text", what, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "" {
		t.Errorf("%s: Retry-After %q; nothing promises space by then", what, ra)
	}
	// Nor within the SDKs' retries (they retry every 5xx twice unless told).
	if sr := r.header.Get("X-Should-Retry"); sr != "false" {
		t.Errorf("%s: x-should-retry %q, want false", what, sr)
	}
}
