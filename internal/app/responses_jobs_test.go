package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// simBackend is a simulator serving model m.
func simBackend(t *testing.T) *httptest.Server {
	t.Helper()
	s := sim.New(sim.Config{Model: "m", DecodeStepBase: time.Millisecond})
	t.Cleanup(s.Close)
	be := httptest.NewServer(s)
	t.Cleanup(be.Close)
	return be
}

// A Responses API request runs as an async job and as Batch API lines
// like chat's; the job's response is remembered with its backend, so its
// follow-up is served.
func TestResponsesAsJobsAndBatchLines(t *testing.T) {
	be := simBackend(t)
	url := startQueueApp(t, be.URL)
	code, h, b := do(t, http.MethodPost, url+"/v1/responses", "application/json",
		strings.NewReader(`{"model":"m","input":"later","max_output_tokens":4}`), "Prefer", "respond-async")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	job := pollJSON(t, url+h.Get("Location"), func(m map[string]any) bool { return m["status"] == "succeeded" })
	res, _ := job["result"].(map[string]any)
	body, _ := json.Marshal(res["body"])
	var r struct{ ID, Object string }
	if res["status_code"] != float64(200) || json.Unmarshal(body, &r) != nil || r.Object != "response" {
		t.Fatalf("job result: %v", job)
	}
	if code, _, b := do(t, http.MethodGet, url+"/v1/responses/"+r.ID, "", nil); code != 200 || !bytes.Contains(b, []byte(r.ID)) {
		t.Fatalf("GET the job's response: %d %s", code, b)
	}
	// background: true is refused for a job as for a live request.
	code, _, b = do(t, http.MethodPost, url+"/v1/responses", "application/json",
		strings.NewReader(`{"model":"m","input":"x","background":true}`), "Prefer", "respond-async")
	if code != 400 || !bytes.Contains(b, []byte(`"param":"background"`)) {
		t.Fatalf("background job: %d %s", code, b)
	}

	var in bytes.Buffer
	const n = 3
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"r%d","method":"POST","url":"/v1/responses","body":{"model":"m","input":"q%d","max_output_tokens":3}}`+"\n", i, i)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "in.jsonl")
	fw.Write(in.Bytes())
	mw.Close()
	code, _, b = do(t, http.MethodPost, url+"/v1/files", mw.FormDataContentType(), &form)
	var file struct{ ID string }
	if code != 200 || json.Unmarshal(b, &file) != nil {
		t.Fatalf("upload: %d %s", code, b)
	}
	code, _, b = do(t, http.MethodPost, url+"/v1/batches", "application/json",
		strings.NewReader(`{"input_file_id":"`+file.ID+`","endpoint":"/v1/responses","completion_window":"24h"}`))
	var batch struct{ ID string }
	if code != 200 || json.Unmarshal(b, &batch) != nil {
		t.Fatalf("create batch: %d %s", code, b)
	}
	done := pollJSON(t, url+"/v1/batches/"+batch.ID, func(m map[string]any) bool { return m["status"] == "completed" })
	out, _ := done["output_file_id"].(string)
	_, _, b = do(t, http.MethodGet, url+"/v1/files/"+out+"/content", "", nil)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n {
		t.Fatalf("output: %d lines: %s", len(lines), b)
	}
	for _, l := range lines {
		var o struct {
			Response struct {
				StatusCode int `json:"status_code"`
				Body       struct{ Object string }
			} `json:"response"`
		}
		if json.Unmarshal([]byte(l), &o) != nil || o.Response.StatusCode != 200 || o.Response.Body.Object != "response" {
			t.Fatalf("line: %s", l)
		}
	}
}
