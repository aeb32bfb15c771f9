package batchapi_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/openai"
)

func TestFileRoundTrip(t *testing.T) {
	e := newEnv(t, envOptions{})
	content := chatFile("a", "b")
	for _, fileFirst := range []bool{false, true} { // python's order, node's order
		ct, body := multipartUpload("batch", content, fileFirst, true)
		r := e.do(e.tenant, http.MethodPost, "/v1/files", ct, body)
		if r.status != http.StatusOK {
			t.Fatalf("upload (file first %v): %d %s", fileFirst, r.status, r.body)
		}
		var f jobs.File
		r.json(t, &f)
		if f.ID == "" || f.Object != "file" || f.Bytes != int64(len(content)) || f.Filename != "batch_input.jsonl" ||
			f.Purpose != "batch" || f.Status != "processed" || f.CreatedAt != testNow.Unix() {
			t.Fatalf("file object %s", r.body)
		}

		r = e.get("/v1/files/" + f.ID)
		var got jobs.File
		r.json(t, &got)
		if r.status != http.StatusOK || got.ID != f.ID || got.Bytes != f.Bytes || got.Purpose != "batch" {
			t.Fatalf("GET file: %d %s", r.status, r.body)
		}

		r = e.get("/v1/files/" + f.ID + "/content")
		if r.status != http.StatusOK || !bytes.Equal(r.body, content) {
			t.Fatalf("content: %d %q", r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("content type %q", ct)
		}

		r = e.do(e.tenant, http.MethodDelete, "/v1/files/"+f.ID, "", nil)
		if r.status != http.StatusOK || string(bytes.TrimSpace(r.body)) != `{"id":"`+f.ID+`","object":"file","deleted":true}` {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		er := e.get("/v1/files/"+f.ID).wantError(t, http.StatusNotFound)
		if er.Error.Message != "No such File object: "+f.ID || er.Error.Type != "invalid_request_error" ||
			er.Error.Param == nil || *er.Error.Param != "id" || er.Error.Code != nil {
			t.Fatalf("404 after delete: %+v", er)
		}
		e.get("/v1/files/"+f.ID+"/content").wantError(t, http.StatusNotFound)
	}
}

func TestUploadRejects(t *testing.T) {
	e := newEnv(t, envOptions{maxFileBytes: 4096})
	good := chatFile("a")
	cases := []struct {
		name      string
		purpose   string
		content   []byte
		filePart  bool
		status    int
		param     string
		msgSubstr string
	}{
		{"purpose fine-tune", "fine-tune", good, true, 400, "purpose", "fine-tune"},
		{"no file part", "batch", nil, false, 400, "file", "file"},
		{"empty file", "batch", []byte("\n\n"), true, 400, "file", "no requests"},
		{"bad line", "batch", []byte(chatLine("a", "m1") + "\n" + `{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n"),
			true, 400, "file", "line 2: body.model"},
		{"bad json", "batch", []byte("{\n"), true, 400, "file", "line 1: line is not valid JSON"},
		{"duplicate id", "batch", chatFile("a", "b", "a"), true, 400, "file", "line 3"},
		{"unserved model", "batch", []byte(chatLine("a", "gpt-9")), true, 400, "file", "gpt-9"},
		{"over the limit", "batch", bytes.Repeat(good, 4096/len(good)+1), true, 413, "file", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := multipartUpload(tc.purpose, tc.content, false, tc.filePart)
			er := e.do(e.tenant, http.MethodPost, "/v1/files", ct, body).wantError(t, tc.status)
			if er.Error.Param == nil || *er.Error.Param != tc.param || !strings.Contains(er.Error.Message, tc.msgSubstr) {
				t.Fatalf("error %+v (param %v)", er.Error, er.Error.Param)
			}
		})
	}

	// A field sent twice is refused naming it, in either order: before,
	// the last purpose won silently (fine-tune then batch was stored as
	// batch), and a second file was a 400 naming no field.
	for _, tc := range []struct{ name, param string }{{"purpose", "purpose"}, {"file", "file"}} {
		t.Run("duplicate "+tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			mw.WriteField("purpose", "fine-tune")
			w, _ := mw.CreateFormFile("file", "batch_input.jsonl")
			w.Write(good)
			if tc.name == "purpose" {
				mw.WriteField("purpose", "batch")
			} else {
				w, _ = mw.CreateFormFile("file", "again.jsonl")
				w.Write(good)
			}
			mw.Close()
			er := e.do(e.tenant, http.MethodPost, "/v1/files", mw.FormDataContentType(), &buf).wantError(t, 400)
			if er.Error.Param == nil || *er.Error.Param != tc.param || er.Error.Code == nil || *er.Error.Code != "duplicate_parameter" {
				t.Fatalf("error %+v (param %v code %v)", er.Error, er.Error.Param, er.Error.Code)
			}
		})
	}

	t.Run("not multipart", func(t *testing.T) {
		e.do(e.tenant, http.MethodPost, "/v1/files", "application/json", strings.NewReader(`{}`)).wantError(t, 400)
	})
	t.Run("truncated multipart", func(t *testing.T) {
		ct, body := multipartUpload("batch", good, false, true)
		cut := bytes.NewReader(body.Bytes()[:body.Len()-10])
		e.do(e.tenant, http.MethodPost, "/v1/files", ct, cut).wantError(t, 400)
	})
	t.Run("body over the limit", func(t *testing.T) {
		// A huge extra field trips the body limit, not the file's.
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("purpose", "batch")
		mw.WriteField("junk", strings.Repeat("x", 2<<20))
		mw.Close()
		er := e.do(e.tenant, http.MethodPost, "/v1/files", mw.FormDataContentType(), &buf).wantError(t, 413)
		if er.Error.Code == nil || *er.Error.Code != "file_too_large" {
			t.Fatalf("error %+v", er.Error)
		}
	})
	t.Run("at the limit", func(t *testing.T) {
		line := []byte(chatLine("a", "m1"))
		exact := append(line, bytes.Repeat([]byte("\n"), 4096-len(line))...)
		if r := e.upload(exact); r.status != http.StatusOK {
			t.Fatalf("a file of exactly MaxFileBytes: %d %s", r.status, r.body)
		}
	})
}

func TestRoutingAndMethods(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, p := range []string{"/v1/files", "/v1/files/x", "/v1/files/x/content", "/v1/batches", "/v1/batches/x",
		"/v1/batches/x/cancel", "/v1/jobs/x"} {
		if !e.h.Handles(p) {
			t.Errorf("Handles(%q) = false", p)
		}
	}
	for _, p := range []string{"/v1/files/", "/v1/files//content", "/v1/files/x/y", "/v1/jobs", "/v1/jobs/x/y",
		"/v1/batches/x/cancel/", "/v1/chat/completions", "/files", "/v1/batches/x/results"} {
		if e.h.Handles(p) {
			t.Errorf("Handles(%q) = true", p)
		}
	}
	cases := []struct{ method, path, allow string }{
		{http.MethodPut, "/v1/files", "GET, POST"},
		{http.MethodPost, "/v1/files/file-1", "GET, DELETE"},
		{http.MethodDelete, "/v1/files/file-1/content", "GET"},
		{http.MethodDelete, "/v1/batches", "GET, POST"},
		{http.MethodPost, "/v1/batches/batch_1", "GET"},
		{http.MethodGet, "/v1/batches/batch_1/cancel", "POST"},
		{http.MethodPost, "/v1/jobs/job_1", "GET, DELETE"},
	}
	for _, tc := range cases {
		r := e.do(e.tenant, tc.method, tc.path, "", nil)
		r.wantError(t, http.StatusMethodNotAllowed)
		if got := r.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	// Ids the store never hands out are unknown, whatever they contain.
	er := e.get("/v1/files/a.b%2A>").wantError(t, http.StatusNotFound)
	if !strings.HasPrefix(er.Error.Message, "No such File object") {
		t.Errorf("odd id: %+v", er.Error)
	}
}

func TestListFiles(t *testing.T) {
	e := newEnv(t, envOptions{})
	var ids []string
	for i := range 3 {
		f := e.uploadOK(chatFile("a"))
		ids = append(ids, f.ID)
		e.clock.Advance(time.Second * time.Duration(i+1)) // distinct created_at
	}
	type page struct {
		Object  string      `json:"object"`
		Data    []jobs.File `json:"data"`
		HasMore bool        `json:"has_more"`
		FirstID *string     `json:"first_id"`
		LastID  *string     `json:"last_id"`
	}
	var p page
	r := e.get("/v1/files?limit=2")
	r.json(t, &p)
	if r.status != http.StatusOK || p.Object != "list" || len(p.Data) != 2 || !p.HasMore ||
		p.Data[0].ID != ids[2] || p.Data[1].ID != ids[1] || *p.LastID != ids[1] {
		t.Fatalf("first page: %d %s", r.status, r.body)
	}
	r = e.get("/v1/files?limit=2&after=" + ids[1])
	p = page{}
	r.json(t, &p)
	if len(p.Data) != 1 || p.Data[0].ID != ids[0] || p.HasMore {
		t.Fatalf("second page: %s", r.body)
	}
	r = e.get("/v1/files?order=asc&purpose=batch")
	p = page{}
	r.json(t, &p)
	if len(p.Data) != 3 || p.Data[0].ID != ids[0] {
		t.Fatalf("ascending: %s", r.body)
	}
	// Another tenant sees none of them.
	r = e.do("someone-else", http.MethodGet, "/v1/files", "", nil)
	p = page{}
	r.json(t, &p)
	if r.status != http.StatusOK || len(p.Data) != 0 || p.Data == nil {
		t.Fatalf("other tenant: %d %s", r.status, r.body)
	}
	e.get("/v1/files?limit=0").wantError(t, http.StatusBadRequest)
}

// A 404 quotes the id asked for cut to openai.MaxEcho bytes, and a line
// error the model it names: before, a 16 KiB id came back whole.
func TestErrorsClipClientInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	long := strings.Repeat("f", 16<<10)
	er := e.get("/v1/files/file-"+long).wantError(t, http.StatusNotFound)
	if len(er.Error.Message) > openai.MaxEcho+100 || !strings.Contains(er.Error.Message, " bytes]") {
		t.Fatalf("404 message of %d bytes: %.300s", len(er.Error.Message), er.Error.Message)
	}
	ct, body := multipartUpload("batch", []byte(chatLine("a", "m"+long)+"\n"), false, true)
	er = e.do(e.tenant, http.MethodPost, "/v1/files", ct, body).wantError(t, http.StatusBadRequest)
	if len(er.Error.Message) > openai.MaxEcho+200 || !strings.Contains(er.Error.Message, " bytes]") {
		t.Fatalf("line error of %d bytes: %.300s", len(er.Error.Message), er.Error.Message)
	}
}

// An upload whose lines name two models is refused, as OpenAI refuses the
// batch (it was stored, and its batch ran both models).
func TestUploadMixedModelsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	er := e.upload([]byte(chatLine("a", "m1")+"\n"+chatLine("b", "m2")+"\n")).wantError(t, http.StatusBadRequest)
	if er.Error.Code == nil || *er.Error.Code != "model_mismatch" || er.Error.Param == nil || *er.Error.Param != "file" ||
		!strings.Contains(er.Error.Message, `line 2: model "m2" differs from "m1" on line 1`) {
		t.Errorf("%+v", er.Error)
	}
}
