package batchapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestBatchLargerThanTheStoreIsRefusedHonestly posts a batch whose
// results alone are expected to take more than the store admits (two
// copies of each line, storereserve.go), on a store that holds nothing
// but its input file: no delete and no retention can make room for it.
// It is refused 400 naming input_file_id, telling the client to split
// the file. It was refused 507 storage_full, "delete files or wait for
// retention to free space", forever: a client following the message
// deleted its files and was refused again.
func TestBatchLargerThanTheStoreIsRefusedHonestly(t *testing.T) {
	e := newEnv(t, envOptions{maxStoreBytes: 512 << 10, maxFileBytes: 320 << 10})
	// Five lines of 48 KiB: 240 KiB of input, about 490 KiB expected of
	// results, past the 90% line of 512 KiB (about 461 KiB).
	var content strings.Builder
	for i := range 5 {
		content.WriteString(strings.Replace(chatLine(fmt.Sprintf("pad-%d", i), "m1"), `"hi"`, `"`+strings.Repeat("x", 48<<10)+`"`, 1) + "\n")
	}
	input := e.uploadOK([]byte(content.String()))
	r := e.postJSON("/v1/batches", map[string]any{"input_file_id": input.ID,
		"endpoint": "/v1/chat/completions", "completion_window": "24h"})
	got := r.wantError(t, http.StatusBadRequest)
	if got.Error.Code == nil || *got.Error.Code != "batch_too_large" || got.Error.Param == nil || *got.Error.Param != "input_file_id" ||
		strings.Contains(got.Error.Message, "nats") || strings.Contains(got.Error.Message, "jobs:") {
		t.Fatalf("batch larger than the store: %s; want 400 batch_too_large naming input_file_id", r.body)
	}
	// A batch that fits is still accepted on the same store.
	small := e.uploadOK(chatFile("a"))
	if r := e.postJSON("/v1/batches", map[string]any{"input_file_id": small.ID,
		"endpoint": "/v1/chat/completions", "completion_window": "24h"}); r.status != http.StatusOK {
		t.Fatalf("a small batch: %d %s", r.status, r.body)
	}
}
