package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestModelRouteMethods: /v1/models/{id} answers GET and HEAD only; any
// other method is a 405 with Allow, as on /v1/models (it answered 200
// with the model object to DELETE, PUT and POST).
func TestModelRouteMethods(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		resp := do(t, m, srv.URL+"/v1/models/m1", "")
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q: %s", m, resp.StatusCode, resp.Header.Get("Allow"), body)
			continue
		}
		if code, _, _ := errorObject(t, body); code != "method_not_allowed" {
			t.Errorf("%s: code %q", m, code)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp := do(t, m, srv.URL+"/v1/models/m1", "")
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d: %s", m, resp.StatusCode, body)
		}
	}
}

// TestProbeAndAdminRouteMethods: the probes' routes (/healthz, /readyz)
// and the admin routes that only read (/metrics, /status, /scaling,
// /spare, the dashboard's page and assets) answer a method other than GET
// or HEAD with 405, Allow: GET, HEAD and an OpenAI error, as
// /v1/models/{id} does; the probes' 405 carries a request id. GET and
// HEAD still answer.
func TestProbeAndAdminRouteMethods(t *testing.T) {
	be := newOKBackend(t)
	srv, gw := startGateway(t, testConfig(be.URL))
	admin := adminServer(t, gw)
	for _, url := range []string{srv.URL + "/healthz", srv.URL + "/readyz", admin.URL + "/metrics", admin.URL + "/status",
		admin.URL + "/scaling", admin.URL + "/spare?model=m1", admin.URL + "/", admin.URL + "/dashboard.js"} {
		public := strings.HasPrefix(url, srv.URL)
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			resp := do(t, m, url, "")
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: status %d, Allow %q: %s", m, url, resp.StatusCode, resp.Header.Get("Allow"), body)
				continue
			}
			if code, _, _ := errorObject(t, body); code != "method_not_allowed" {
				t.Errorf("%s %s: code %q", m, url, code)
			}
			if id := resp.Header.Get("X-Request-Id"); public && len(id) != 32 {
				t.Errorf("%s %s: X-Request-Id %q", m, url, id)
			}
		}
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			resp := do(t, m, url, "")
			if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: status %d: %s", m, url, resp.StatusCode, body)
			}
		}
	}
}

// TestEveryAnswerHasRequestID: the answers outside the inference chain
// (an unknown URL, /v1/models, a model, a refused method there) carry an
// X-Request-Id too, the client's own when it sent a sane one, so a client
// can quote it.
func TestEveryAnswerHasRequestID(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/no-such-route"},
		{"GET", "/v1/chat/completions/"},
		{"GET", "/v1/models"},
		{"GET", "/v1/models/m1"},
		{"GET", "/v1/models/nope"},
		{"DELETE", "/v1/models"},
	} {
		resp := do(t, c.method, srv.URL+c.path, "")
		readAll(t, resp)
		if id := resp.Header.Get("X-Request-Id"); len(id) != 32 {
			t.Errorf("%s %s: X-Request-Id %q", c.method, c.path, id)
		}
		resp = do(t, c.method, srv.URL+c.path, "", "X-Request-Id", "client-chosen-1")
		readAll(t, resp)
		if id := resp.Header.Get("X-Request-Id"); id != "client-chosen-1" {
			t.Errorf("%s %s: X-Request-Id %q, want the client's", c.method, c.path, id)
		}
	}
}

// TestEchoedInputStaysValidJSON: an unknown URL or model holding control
// characters or invalid UTF-8 is echoed in the message of an answer that
// is still valid JSON (strconv.Quote's \x00 made it unparseable).
func TestEchoedInputStaysValidJSON(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions%00%07%FF", ""},
		{"GET", "/v1/models/a%00b%FF", ""},
		// (A body that is not UTF-8 is refused before its model is read:
		// TestBodyNotUTF8IsRefusedBeforeTheBackend.)
		{"POST", "/v1/chat/completions", "{\"model\":\"m\\u0000\\u0007\\udcff\",\"messages\":[]}"},
	} {
		resp := do(t, c.method, srv.URL+c.path, c.body)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusNotFound || !json.Valid([]byte(body)) {
			t.Errorf("%s %q: status %d, valid JSON %v: %q", c.path, c.body, resp.StatusCode, json.Valid([]byte(body)), body)
		}
	}
}

// TestContentEncodingRefused: the gateway reads a body as sent and
// forwards it byte for byte; a coded body (gzip) is refused with 415
// naming the header and Accept-Encoding: identity (RFC 9110 15.5.16),
// instead of "not valid JSON (at byte 1)", or, for a plain body labelled
// gzip, being read as plain here and as gzip by a backend that decodes.
func TestContentEncodingRefused(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	plain := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(plain))
	zw.Close()
	for _, c := range []struct{ ce, body string }{{"gzip", gz.String()}, {"gzip", plain}, {"br", plain}, {"deflate, identity", plain}} {
		resp := post(t, srv.URL+"/v1/chat/completions", c.body, "Content-Encoding", c.ce)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Accept-Encoding") != "identity" {
			t.Errorf("%s: status %d, Accept-Encoding %q: %s", c.ce, resp.StatusCode, resp.Header.Get("Accept-Encoding"), body)
			continue
		}
		if code, param, _ := errorObject(t, body); code != "unsupported_content_encoding" || param != "Content-Encoding" {
			t.Errorf("%s: code %q param %q", c.ce, code, param)
		}
	}
	if n := be.calls.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the backend", n)
	}
	for _, ce := range []string{"identity", "Identity", ""} {
		resp := post(t, srv.URL+"/v1/chat/completions", plain, "Content-Encoding", ce)
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
			t.Errorf("Content-Encoding %q: status %d: %s", ce, resp.StatusCode, body)
		}
	}
}

// TestWrongMethodAndUnknownModelAnswers: the exact answers of a wrong
// method (one wording on every route: the method, the path, what to use;
// Allow lists the methods) and of a model GET /v1/models/{id} does not
// serve (404 naming the parameter, model, as the inference routes do).
func TestWrongMethodAndUnknownModelAnswers(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for _, c := range []struct {
		method, path string
		status       int
		allow, body  string
	}{
		{"GET", "/v1/chat/completions", 405, "POST",
			`{"error":{"message":"GET is not allowed for /v1/chat/completions; use POST","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`},
		{"PUT", "/v1/rerank", 405, "POST",
			`{"error":{"message":"PUT is not allowed for /v1/rerank; use POST","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`},
		{"POST", "/v1/models", 405, "GET, HEAD",
			`{"error":{"message":"POST is not allowed for /v1/models; use GET","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`},
		{"PUT", "/v1/responses/resp_1", 405, "GET, DELETE",
			`{"error":{"message":"PUT is not allowed for /v1/responses/resp_1; use GET or DELETE","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}`},
		{"GET", "/v1/models/nope", 404, "",
			`{"error":{"message":"The model 'nope' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}`},
	} {
		resp := do(t, c.method, srv.URL+c.path, "")
		body := strings.TrimSpace(readAll(t, resp))
		if resp.StatusCode != c.status || resp.Header.Get("Allow") != c.allow || body != c.body {
			t.Errorf("%s %s: %d Allow %q %s\nwant %d Allow %q %s", c.method, c.path,
				resp.StatusCode, resp.Header.Get("Allow"), body, c.status, c.allow, c.body)
		}
	}
}
