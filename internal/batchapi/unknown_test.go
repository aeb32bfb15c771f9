package batchapi_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// TestCreateBatchRefusesUnknownParameters: POST /v1/batches answers a
// key it does not take as OpenAI does, 400 unknown_parameter "Unknown
// parameter: 'x'." with param x (a misspelling, a case variant, a key
// inside output_expires_after, one after the known ones), rather than
// creating a batch that ignored it; trailing bytes after the object and
// a body that is not UTF-8 are invalid_json. The known keys (null
// included) still create the batch.
func TestCreateBatchRefusesUnknownParameters(t *testing.T) {
	e := newEnv(t, envOptions{})
	f := e.uploadOK([]byte(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","messages":[]}}` + "\n"))
	base := `"input_file_id":"` + f.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h"`
	for _, tc := range []struct{ body, param string }{
		{`{` + base + `,"completion_windw":"24h"}`, "completion_windw"},
		{`{` + base + `,"Endpoint":"/v1/chat/completions"}`, "Endpoint"},
		{`{"zz":1,` + base + `,"aa":2}`, "aa"},
		{`{` + base + `,"output_expires_after":{"anchor":"created_at","seconds":3600,"unit":"s"}}`, "output_expires_after.unit"},
	} {
		r := e.do(e.tenant, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(tc.body))
		er := r.wantError(t, http.StatusBadRequest)
		if er.Error.Code == nil || *er.Error.Code != "unknown_parameter" || er.Error.Param == nil || *er.Error.Param != tc.param ||
			er.Error.Message != "Unknown parameter: '"+tc.param+"'." || er.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %s", tc.body, r.body)
		}
	}
	for _, body := range []string{`{` + base + `} {"x":1}`, "{" + base + `,"metadata":{"k":"caf` + "\xe9" + `"}}`} {
		r := e.do(e.tenant, http.MethodPost, "/v1/batches", "application/json", strings.NewReader(body))
		if er := r.wantError(t, http.StatusBadRequest); er.Error.Code == nil || *er.Error.Code != "invalid_json" {
			t.Errorf("%q: %s", body, r.body)
		}
	}
	r := e.do(e.tenant, http.MethodPost, "/v1/batches", "application/json",
		strings.NewReader(`{`+base+`,"metadata":null,"output_expires_after":{"anchor":"created_at","seconds":3600}}`))
	if r.status != http.StatusOK {
		t.Fatalf("known keys: %d %s", r.status, r.body)
	}
}

// TestUploadRefusesUnknownFormFields: POST /v1/files answers a form field
// it does not take (before or after the file) as an unknown parameter
// naming it, instead of skipping it; purpose, file and expires_after[...]
// still upload.
func TestUploadRefusesUnknownFormFields(t *testing.T) {
	e := newEnv(t, envOptions{})
	line := []byte(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","messages":[]}}` + "\n")
	form := func(extra string, extraFirst bool) (string, *bytes.Buffer) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if extraFirst && extra != "" {
			mw.WriteField(extra, "x")
		}
		mw.WriteField("purpose", "batch")
		mw.WriteField("expires_after[anchor]", "created_at")
		mw.WriteField("expires_after[seconds]", "3600")
		w, _ := mw.CreateFormFile("file", "in.jsonl")
		w.Write(line)
		if !extraFirst && extra != "" {
			mw.WriteField(extra, "x")
		}
		mw.Close()
		return mw.FormDataContentType(), &buf
	}
	for _, tc := range []struct {
		name  string
		first bool
	}{{"purpse", true}, {"expires_after[unit]", false}, {"Purpose", false}} {
		ct, body := form(tc.name, tc.first)
		r := e.do(e.tenant, http.MethodPost, "/v1/files", ct, body)
		er := r.wantError(t, http.StatusBadRequest)
		if er.Error.Code == nil || *er.Error.Code != "unknown_parameter" || er.Error.Param == nil || *er.Error.Param != tc.name {
			t.Errorf("%s: %s", tc.name, r.body)
		}
	}
	ct, body := form("", false)
	if r := e.do(e.tenant, http.MethodPost, "/v1/files", ct, body); r.status != http.StatusOK {
		t.Fatalf("known fields: %d %s", r.status, r.body)
	}
}
