package batchapi_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// uploadExpiring uploads content with the expires_after form fields the
// SDKs send (fields in order; the file part first, as openai-node does,
// or last, as openai-python does).
func (e *env) uploadExpiring(content []byte, fileFirst bool, fields ...string) response {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	file := func() {
		w, _ := mw.CreateFormFile("file", "in.jsonl")
		w.Write(content)
	}
	if fileFirst {
		file()
	}
	mw.WriteField("purpose", "batch")
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	if !fileFirst {
		file()
	}
	mw.Close()
	return e.do(e.tenant, http.MethodPost, "/v1/files", mw.FormDataContentType(), &buf)
}

// An upload's expires_after sets its expires_at (it was ignored: every
// file showed created_at + retention), and past it the file is gone: 404
// on retrieve, content and delete, out of the list; the tracker's sweep
// deletes its content (the metric counts it). A lifetime past the
// store's retention is shortened to it.
func TestUploadExpiresAfter(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOptions{reg: reg})
	for _, fileFirst := range []bool{true, false} {
		r := e.uploadExpiring(chatFile("a"), fileFirst, "expires_after[anchor]", "created_at", "expires_after[seconds]", "3600")
		if r.status != http.StatusOK {
			t.Fatalf("upload: %d %s", r.status, r.body)
		}
		var f jobs.File
		r.json(t, &f)
		if f.CreatedAt != testNow.Unix() || f.ExpiresAt != testNow.Unix()+3600 {
			t.Fatalf("fileFirst=%v: created_at %d expires_at %d, want %d and +3600", fileFirst, f.CreatedAt, f.ExpiresAt, testNow.Unix())
		}
	}
	r := e.uploadExpiring(chatFile("a"), true, "expires_after[anchor]", "created_at", "expires_after[seconds]", "2592000")
	var long jobs.File
	r.json(t, &long)
	if want := testNow.Unix() + int64(7*24*time.Hour/time.Second); long.ExpiresAt != want {
		t.Fatalf("30 days asked, retention 7: expires_at %d, want %d", long.ExpiresAt, want)
	}
	var page struct{ Data []jobs.File }
	e.get("/v1/files").json(t, &page)
	if len(page.Data) != 3 {
		t.Fatalf("%d files listed before expiry, want 3", len(page.Data))
	}
	short := page.Data[1].ID // newest first, same second: by id; either short one
	if short == long.ID {
		short = page.Data[0].ID
	}

	e.clock.Advance(3600 * time.Second)
	for _, path := range []string{"/v1/files/" + short, "/v1/files/" + short + "/content"} {
		e.get(path).wantError(t, http.StatusNotFound)
	}
	e.do(e.tenant, http.MethodDelete, "/v1/files/"+short, "", nil).wantError(t, http.StatusNotFound)
	e.get("/v1/files").json(t, &page)
	if len(page.Data) != 1 || page.Data[0].ID != long.ID {
		t.Fatalf("listed after expiry: %+v, want only %s", page.Data, long.ID)
	}
	if r := e.get("/v1/files/" + long.ID + "/content"); r.status != http.StatusOK {
		t.Fatalf("the unexpired file: %d %s", r.status, r.body)
	}
	// The sweep runs as the tracker starts, then every hour of its clock.
	eventually(t, "the sweep to delete the two expired files", func() bool {
		return gathered(t, reg, "sluice_jobs_expired_files_deleted_total") == 2
	})
}

// Invalid expiration policies are 400s naming the field, on the upload
// and on the batch; nothing is stored.
func TestExpiresAfterInvalid(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		fields      []string
		code, param string
	}{
		{[]string{"expires_after[anchor]", "last_active_at", "expires_after[seconds]", "3600"}, "invalid_value", "expires_after.anchor"},
		{[]string{"expires_after[anchor]", "created_at", "expires_after[seconds]", "3599"}, "integer_below_min_value", "expires_after.seconds"},
		{[]string{"expires_after[anchor]", "created_at", "expires_after[seconds]", "2592001"}, "integer_above_max_value", "expires_after.seconds"},
		{[]string{"expires_after[anchor]", "created_at", "expires_after[seconds]", "1h"}, "invalid_type", "expires_after.seconds"},
		{[]string{"expires_after[seconds]", "3600"}, "missing_required_parameter", "expires_after.anchor"},
		{[]string{"expires_after[anchor]", "created_at"}, "missing_required_parameter", "expires_after.seconds"},
		{[]string{"expires_after[anchor]", "created_at", "expires_after[anchor]", "created_at", "expires_after[seconds]", "3600"},
			"duplicate_parameter", "expires_after[anchor]"},
	} {
		er := e.uploadExpiring(chatFile("a"), false, tc.fields...).wantError(t, http.StatusBadRequest)
		if er.Error.Code == nil || *er.Error.Code != tc.code || er.Error.Param == nil || *er.Error.Param != tc.param {
			t.Errorf("%v: %+v, want code %s param %s", tc.fields, er.Error, tc.code, tc.param)
		}
	}
	var page struct{ Data []jobs.File }
	e.get("/v1/files").json(t, &page)
	if len(page.Data) != 0 {
		t.Fatalf("%d files stored by refused uploads", len(page.Data))
	}

	f := e.uploadOK(chatFile("a"))
	for _, tc := range []struct {
		policy      any
		code, param string
	}{
		{map[string]any{"anchor": "created_at", "seconds": 60}, "integer_below_min_value", "output_expires_after.seconds"},
		{map[string]any{"anchor": "created_at", "seconds": 2592001}, "integer_above_max_value", "output_expires_after.seconds"},
		{map[string]any{"anchor": "batch_created_at", "seconds": 3600}, "invalid_value", "output_expires_after.anchor"},
		{map[string]any{"seconds": 3600}, "missing_required_parameter", "output_expires_after.anchor"},
		{map[string]any{"anchor": "created_at"}, "missing_required_parameter", "output_expires_after.seconds"},
		{map[string]any{"anchor": "created_at", "seconds": "3600"}, "invalid_type", "output_expires_after.seconds"},
		{"1h", "invalid_type", "output_expires_after"},
	} {
		er := e.postJSON("/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions",
			"completion_window": "24h", "output_expires_after": tc.policy}).wantError(t, http.StatusBadRequest)
		if er.Error.Code == nil || *er.Error.Code != tc.code || er.Error.Param == nil || *er.Error.Param != tc.param {
			t.Errorf("%v: %+v, want code %s param %s", tc.policy, er.Error, tc.code, tc.param)
		}
	}
	var batches struct{ Data []jobs.Batch }
	e.get("/v1/batches").json(t, &batches)
	if len(batches.Data) != 0 {
		t.Fatalf("%d batches created by refused requests", len(batches.Data))
	}
}

// A batch's output_expires_after sets its output file's expires_at,
// counted from the file's creation (OpenAI's anchor), and the file goes
// then; the batch's input file keeps its own.
func TestBatchOutputExpiresAfter(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.startWorker()
	in := e.uploadOK(chatFile("a", "b"))
	r := e.postJSON("/v1/batches", map[string]any{"input_file_id": in.ID, "endpoint": "/v1/chat/completions",
		"completion_window": "24h", "output_expires_after": map[string]any{"anchor": "created_at", "seconds": 7200}})
	if r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var b jobs.Batch
	r.json(t, &b)
	e.clock.Advance(10 * time.Second) // the output file is created after the batch
	eventually(t, "the batch to complete", func() bool {
		e.get("/v1/batches/"+b.ID).json(t, &b)
		return b.Status == "completed"
	})
	var out jobs.File
	e.get("/v1/files/"+*b.OutputFileID).json(t, &out)
	if out.CreatedAt < testNow.Unix()+10 || out.ExpiresAt != out.CreatedAt+7200 {
		t.Fatalf("output file created_at %d expires_at %d, want expires_at = created_at + 7200 (batch created %d)",
			out.CreatedAt, out.ExpiresAt, b.CreatedAt)
	}
	e.clock.Advance(time.Duration(out.ExpiresAt-e.clock.Now().Unix()) * time.Second)
	e.get("/v1/files/"+out.ID+"/content").wantError(t, http.StatusNotFound)
	if r := e.get("/v1/files/" + in.ID); r.status != http.StatusOK {
		t.Fatalf("input file: %d %s", r.status, r.body)
	}
}
