package gateway

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// fastAPIBackend answers as vLLM's FastAPI app does: a body whose
// Content-Type is not JSON (present and not application/json or +json)
// is read as bytes and refused 422 with FastAPI's {"detail": [...]}; a
// JSON one whose bytes are not UTF-8 is refused 400 "There was an error
// parsing the body" (json.loads fails to decode it). It counts calls.
func fastAPIBackend(t *testing.T, calls *atomic.Int64) *httptest.Server {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, _ := mime.ParseMediaType(ct)
			if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
				w.WriteHeader(http.StatusUnprocessableEntity)
				io.WriteString(w, `{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from"}]}`)
				return
			}
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil || !utf8.Valid(body) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"detail":"There was an error parsing the body"}`)
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(be.Close)
	return be
}

// TestJSONBodyIsLabelledJSONUpstream: a client that sends the JSON body
// as curl -d does (application/x-www-form-urlencoded), as text/plain, or
// with no Content-Type is served (the README's curl examples send no
// JSON type), and the backend is told the body is JSON: a FastAPI
// backend (vLLM, SGLang) refuses a body labelled otherwise with a 422
// that is no OpenAI error. A type that says JSON passes as the client
// wrote it.
func TestJSONBodyIsLabelledJSONUpstream(t *testing.T) {
	var calls atomic.Int64
	url := startFramedGateway(t, nil, fastAPIBackend(t, &calls).URL)
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "", "application/json; charset=utf-8", "multipart/form-data; boundary=x"} {
		var hdr []string
		if ct != "" {
			hdr = []string{"Content-Type", ct}
		}
		resp := do(t, http.MethodPost, url, body, hdr...)
		got := readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Content-Type %q: %d %s", ct, resp.StatusCode, got)
		}
	}
}

// TestBodyNotUTF8IsRefusedBeforeTheBackend: a chat body that is JSON by
// its grammar but not UTF-8 (a Latin-1 é) is a 400 invalid_json naming
// the byte, an OpenAI error, and reaches no backend; UTF-8 text passes.
func TestBodyNotUTF8IsRefusedBeforeTheBackend(t *testing.T) {
	var calls atomic.Int64
	url := startFramedGateway(t, nil, fastAPIBackend(t, &calls).URL)
	resp := post(t, url, "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d %s", resp.StatusCode, got)
	}
	if typ, code, msg := apiErr(t, got); typ != "invalid_request_error" || code != "invalid_json" ||
		!strings.Contains(msg, "not UTF-8") || !strings.Contains(msg, "at byte 55") {
		t.Errorf("%s %s %q", typ, code, msg)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the backend was called %d times", n)
	}
	resp = post(t, url, `{"model":"m1","messages":[{"role":"user","content":"café 你好"}]}`)
	if got := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("UTF-8 body: %d %s", resp.StatusCode, got)
	}
}
