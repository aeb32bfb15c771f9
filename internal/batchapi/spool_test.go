package batchapi_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Uploads are spooled to temporary files as they arrive; those files were
// bounded only per upload (the file limit), so many uploads at once could
// fill TempDir's disk. Their bytes now count against MaxSpoolBytes
// (sluice_upload_spool_bytes): past it an upload is refused 503
// upload_spool_full with Retry-After, and every spool file goes, whether
// its upload was refused, cut by a client gone, or stored.
func TestUploadSpoolsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const part = 100 << 10
	e := newEnv(t, envOptions{maxFileBytes: 128 << 10, maxSpoolBytes: 256 << 10, handlerReg: reg})
	spooled := func() float64 { return gaugeValue(t, reg, "sluice_upload_spool_bytes") }
	files := func() int {
		ents, err := os.ReadDir(e.spools)
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	line := chatLine("a", "m1")
	// held starts an upload of one valid line padded to part bytes with
	// spaces, sent but for its end; finish ends it, cut abandons it.
	type held struct {
		pw     *io.PipeWriter
		mw     *multipart.Writer
		answer chan response
	}
	start := func() held {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		h := held{pw, mw, make(chan response, 1)}
		// A failed test's uploads end too.
		t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
		go func() { // owned: ends when the pipe is closed
			mw.WriteField("purpose", "batch")
			fw, err := mw.CreateFormFile("file", "in.jsonl")
			if err != nil {
				return
			}
			fw.Write([]byte(line + strings.Repeat(" ", part-len(line))))
		}()
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/files", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.tenant)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		go func() { // owned: ends with the request
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				h.answer <- response{}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			h.answer <- response{status: resp.StatusCode, header: resp.Header, body: b}
		}()
		return h
	}
	a, b := start(), start()
	eventually(t, "two uploads' bytes spooled", func() bool { return spooled() == 2*part })

	ct, body := multipartUpload("batch", bytes.Repeat([]byte(line+"\n"), 800)[:100<<10], false, true)
	r := e.do(e.tenant, http.MethodPost, "/v1/files", ct, body)
	ae := r.wantError(t, http.StatusServiceUnavailable)
	if ae.Error.Code == nil || *ae.Error.Code != "upload_spool_full" || r.header.Get("Retry-After") == "" {
		t.Fatalf("third upload: %s %v; want 503 upload_spool_full with Retry-After", r.body, r.header)
	}
	if v := gaugeValue(t, reg, "sluice_upload_spool_refused_total"); v != 1 {
		t.Errorf("sluice_upload_spool_refused_total %v, want 1", v)
	}
	if n := files(); n != 2 {
		t.Errorf("%d spool files after the refusal, want the 2 uploads'", n)
	}

	a.pw.CloseWithError(io.ErrUnexpectedEOF) // the client goes away mid-upload
	<-a.answer
	eventually(t, "the cut upload's spool given back", func() bool { return spooled() == part && files() == 1 })

	b.pw.CloseWithError(b.mw.Close())
	if r := <-b.answer; r.status != http.StatusOK {
		t.Fatalf("the upload in the bound: %d %s", r.status, r.body)
	}
	if v, n := spooled(), files(); v != 0 || n != 0 {
		t.Errorf("after the last upload was stored: %v bytes spooled, %d spool files; want none", v, n)
	}
}
