package batchapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

func TestBatchCreateAndCancel(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.createBatchOK(chatFile("a", "b", "c"), map[string]string{"run": "nightly"})
	if !strings.HasPrefix(b.ID, "batch") || b.Object != "batch" || b.Endpoint != "/v1/chat/completions" ||
		b.CompletionWindow != "24h" || b.CreatedAt != testNow.Unix() || b.Metadata["run"] != "nightly" {
		t.Fatalf("batch %+v", b)
	}
	// No worker runs: the batch is in progress with all requests pending.
	var got jobs.Batch
	eventually(t, "batch in_progress", func() bool {
		e.get("/v1/batches/"+b.ID).json(t, &got)
		return got.Status == "in_progress"
	})
	if got.RequestCounts != (jobs.BatchCounts{Total: 3}) || got.InputFileID != b.InputFileID || got.Errors != nil {
		t.Fatalf("in progress batch %+v", got)
	}

	r := e.do(e.tenant, http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil)
	r.json(t, &got)
	if r.status != http.StatusOK || (got.Status != "cancelling" && got.Status != "cancelled") || got.CancellingAt == nil {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	eventually(t, "batch cancelled", func() bool {
		e.get("/v1/batches/"+b.ID).json(t, &got)
		return got.Status == "cancelled"
	})
	er := e.do(e.tenant, http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil).wantError(t, http.StatusConflict)
	if er.Error.Message != "Cannot cancel a batch with status 'cancelled'." {
		t.Errorf("second cancel: %+v", er.Error)
	}
}

func TestBatchCompletes(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.startWorker()
	b := e.createBatchOK(chatFile("a", "b"), nil)
	var got jobs.Batch
	eventually(t, "batch completed", func() bool {
		e.get("/v1/batches/"+b.ID).json(t, &got)
		return got.Status == "completed"
	})
	if got.RequestCounts != (jobs.BatchCounts{Total: 2, Completed: 2}) || got.OutputFileID == nil || got.CompletedAt == nil {
		t.Fatalf("completed batch %+v", got)
	}
	r := e.get("/v1/files/" + *got.OutputFileID)
	var f jobs.File
	r.json(t, &f)
	if r.status != http.StatusOK || f.Purpose != "batch_output" {
		t.Fatalf("output file: %d %s", r.status, r.body)
	}
	r = e.get("/v1/files/" + *got.OutputFileID + "/content")
	if r.status != http.StatusOK || int64(len(r.body)) != f.Bytes {
		t.Fatalf("output content: %d, %d bytes, file says %d", r.status, len(r.body), f.Bytes)
	}
	ids := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var line struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int             `json:"status_code"`
				Body       json.RawMessage `json:"body"`
			} `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("output line %q: %v", sc.Bytes(), err)
		}
		if line.Response.StatusCode != 200 || !bytes.Contains(line.Response.Body, []byte(`"content":"hello"`)) {
			t.Errorf("output line %s", sc.Bytes())
		}
		ids[line.CustomID] = true
	}
	if !ids["a"] || !ids["b"] || len(ids) != 2 {
		t.Fatalf("output custom ids %v in %s", ids, r.body)
	}
	r = e.do(e.tenant, http.MethodPost, "/v1/batches/"+b.ID+"/cancel", "", nil)
	er := r.wantError(t, http.StatusConflict)
	if er.Error.Message != "Cannot cancel a batch with status 'completed'." {
		t.Errorf("cancel a completed batch: %+v", er.Error)
	}
	// The SDKs retry a 409 unless told: a completed batch stays completed.
	if got := r.header.Get("X-Should-Retry"); got != "false" {
		t.Errorf("cancel a completed batch: x-should-retry %q, want false", got)
	}
}

func TestBatchCreateRejects(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.uploadOK(chatFile("a"))
	params := func(mod func(map[string]any)) map[string]any {
		p := map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
		mod(p)
		return p
	}
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name   string
		body   map[string]any
		status int
		param  string
		msg    string
	}{
		{"window 1h", params(func(p map[string]any) { p["completion_window"] = "1h" }), 400, "completion_window", "24h"},
		{"no window", params(func(p map[string]any) { delete(p, "completion_window") }), 400, "completion_window", ""},
		{"no file id", params(func(p map[string]any) { delete(p, "input_file_id") }), 400, "input_file_id", ""},
		{"unknown file", params(func(p map[string]any) { p["input_file_id"] = "file-nope" }), 404, "input_file_id", "No such File object: file-nope"},
		{"bad endpoint", params(func(p map[string]any) { p["endpoint"] = "/v1/moderations" }), 400, "endpoint", ""},
		{"endpoint mismatch", params(func(p map[string]any) { p["endpoint"] = "/v1/embeddings" }), 400, "input_file_id", "line 1"},
		{"17 metadata pairs", params(func(p map[string]any) { p["metadata"] = many }), 400, "metadata", ""},
		{"metadata number", params(func(p map[string]any) { p["metadata"] = map[string]any{"a": 1} }), 400, "metadata", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			er := e.postJSON("/v1/batches", tc.body).wantError(t, tc.status)
			if er.Error.Param == nil || !strings.HasPrefix(*er.Error.Param, tc.param) || !strings.Contains(er.Error.Message, tc.msg) {
				t.Fatalf("error %+v param %v", er.Error, er.Error.Param)
			}
		})
	}
	t.Run("output file as input", func(t *testing.T) {
		// An output file has purpose batch_output; it cannot feed a batch.
		e.startWorker()
		b := e.createBatchOK(chatFile("x"), nil)
		var got jobs.Batch
		eventually(t, "batch completed", func() bool {
			e.get("/v1/batches/"+b.ID).json(t, &got)
			return got.Status == "completed"
		})
		er := e.postJSON("/v1/batches", params(func(p map[string]any) { p["input_file_id"] = *got.OutputFileID })).wantError(t, 400)
		if er.Error.Param == nil || *er.Error.Param != "input_file_id" {
			t.Fatalf("error %+v param %v; want param input_file_id", er.Error, er.Error.Param)
		}
	})
	e.do(e.tenant, http.MethodPost, "/v1/batches", "application/json", strings.NewReader("{")).wantError(t, 400)
}

func TestBatchList(t *testing.T) {
	e := newEnv(t, envOptions{})
	var created []string
	for i := range 5 {
		created = append(created, e.createBatchOK(chatFile(fmt.Sprint(i)), nil).ID)
		e.clock.Advance(time.Millisecond) // batch ids sort by creation time
	}
	var all []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		q := "/v1/batches?limit=2"
		if after != "" {
			q += "&after=" + after
		}
		var page struct {
			Object  string       `json:"object"`
			Data    []jobs.Batch `json:"data"`
			FirstID *string      `json:"first_id"`
			LastID  *string      `json:"last_id"`
			HasMore bool         `json:"has_more"`
		}
		r := e.get(q)
		r.json(t, &page)
		if r.status != http.StatusOK || page.Object != "list" || len(page.Data) == 0 || len(page.Data) > 2 ||
			*page.FirstID != page.Data[0].ID || *page.LastID != page.Data[len(page.Data)-1].ID {
			t.Fatalf("page: %d %s", r.status, r.body)
		}
		for _, b := range page.Data {
			all = append(all, b.ID)
		}
		if !page.HasMore {
			break
		}
		after = *page.LastID
	}
	if len(all) != 5 {
		t.Fatalf("listed %v, created %v", all, created)
	}
	for i, id := range all { // newest first
		if id != created[4-i] {
			t.Fatalf("listed %v, created %v", all, created)
		}
	}
	for _, bad := range []string{"0", "101", "x", "-1"} {
		e.get("/v1/batches?limit="+bad).wantError(t, 400)
	}
	// Another tenant sees an empty list, not null.
	r := e.do("tenant-b", http.MethodGet, "/v1/batches", "", nil)
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"data":[]`)) ||
		!bytes.Contains(r.body, []byte(`"first_id":null`)) || !bytes.Contains(r.body, []byte(`"has_more":false`)) {
		t.Fatalf("empty list: %d %s", r.status, r.body)
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.createBatchOK(chatFile("a"), nil)
	r := e.postJSON("/async/v1/chat/completions", map[string]any{"model": "m1"})
	var j jobs.Job
	r.json(t, &j)
	other := "tenant-b"
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/files/" + b.InputFileID},
		{http.MethodGet, "/v1/files/" + b.InputFileID + "/content"},
		{http.MethodDelete, "/v1/files/" + b.InputFileID},
		{http.MethodGet, "/v1/batches/" + b.ID},
		{http.MethodPost, "/v1/batches/" + b.ID + "/cancel"},
		{http.MethodGet, "/v1/jobs/" + j.ID},
		{http.MethodDelete, "/v1/jobs/" + j.ID},
	} {
		e.do(other, c.method, c.path, "", nil).wantError(t, http.StatusNotFound)
	}
	body, _ := json.Marshal(map[string]any{"input_file_id": b.InputFileID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	e.do(other, http.MethodPost, "/v1/batches", "application/json", bytes.NewReader(body)).wantError(t, http.StatusNotFound)
	// The owner still has everything.
	if r := e.get("/v1/files/" + b.InputFileID); r.status != http.StatusOK {
		t.Fatalf("owner's file after other tenant's delete: %d %s", r.status, r.body)
	}
	var got jobs.Batch
	if r := e.get("/v1/batches/" + b.ID); r.status != http.StatusOK {
		t.Fatalf("owner's batch: %d %s", r.status, r.body)
	} else if r.json(t, &got); got.Status == "cancelling" || got.Status == "cancelled" {
		t.Fatalf("another tenant cancelled the batch: %s", r.body)
	}
}

// OpenAI's metadata limits are in characters (64 per key, 512 per value),
// and a value is a string: 64 CJK characters (192 bytes) are a valid key,
// and a null value is refused, not stored as "".
func TestBatchMetadataLimitsAreCharacters(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.uploadOK(chatFile("a"))
	create := func(md map[string]any) response {
		return e.postJSON("/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions",
			"completion_window": "24h", "metadata": md})
	}
	key, value := strings.Repeat("键", 64), strings.Repeat("值", 512)
	r := create(map[string]any{key: value})
	if r.status != http.StatusOK {
		t.Fatalf("a 64-character key with a 512-character value (CJK): %d %s, want 200", r.status, r.body)
	}
	var b jobs.Batch
	r.json(t, &b)
	if b.Metadata[key] != value {
		t.Fatalf("metadata stored as %q", b.Metadata)
	}
	for name, md := range map[string]map[string]any{
		"65-character key":    {key + "键": "v"},
		"513-character value": {"k": value + "值"},
	} {
		if er := create(md).wantError(t, http.StatusBadRequest); er.Error.Param == nil || *er.Error.Param != "metadata" {
			t.Errorf("%s: error %+v, want a 400 naming metadata", name, er.Error)
		}
	}
	er := create(map[string]any{"k": nil}).wantError(t, http.StatusBadRequest)
	if er.Error.Param == nil || *er.Error.Param != "metadata.k" || er.Error.Code == nil || *er.Error.Code != "invalid_type" {
		t.Errorf("a null metadata value: error %+v, want invalid_type naming metadata.k", er.Error)
	}
}
