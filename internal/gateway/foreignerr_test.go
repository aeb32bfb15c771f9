package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBackendErrorThatIsNotJSONBecomesAnOpenAIError: a backend's error
// answer whose body is not JSON (the HTML 502 page of a proxy in front of
// vLLM, a plain-text 500, an empty 500, nginx's HTML 503 with
// Retry-After) reaches the client with its status as an OpenAI error
// object naming the request id, never the page's text, streamed request
// or not; the page's start is in the log under that id. A JSON error body
// (an OpenAI object, FastAPI's {"detail"} even labelled text/plain)
// passes byte for byte, and an event stream whose first event is an
// OpenAI error object (vLLM's, SGLang's answer to a refused stream) gives
// the client that object as JSON, the backend's message kept; before, it
// was wrapped whole as upstream_error.
func TestBackendErrorThatIsNotJSONBecomesAnOpenAIError(t *testing.T) {
	const vllmTooLong = `{"error":{"message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}}`
	const sglangBusy = `{"error":{"message":"The server is busy","type":"server_error","code":"busy"}}`
	const page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.25.3 upstream 10.0.0.7:8000</center></body></html>"
	for _, tc := range []struct {
		name, ct, body string
		status         int
		stream, pass   bool
		retryAfter     string
		typ            string
		extract        string // the event's object the client gets
	}{
		{name: "html 502", ct: "text/html", body: page, status: 502, typ: "server_error"},
		{name: "html 502 to a stream", ct: "text/html", body: page, status: 502, stream: true, typ: "server_error"},
		{name: "text 500", ct: "text/plain; charset=utf-8", body: "Internal Server Error: Traceback (most recent call last) in /srv/app.py", status: 500, typ: "server_error"},
		{name: "empty 500", ct: "", body: "", status: 500, typ: "server_error"},
		{name: "html 401", ct: "text/html", body: "<h1>401 Authorization Required</h1>", status: 401, typ: "authentication_error"},
		{name: "html 413", ct: "text/html", body: "<h1>413 Request Entity Too Large</h1>", status: 413, typ: "invalid_request_error"},
		{name: "html 503 busy", ct: "text/html", body: "<h1>503 Service Temporarily Unavailable</h1>", status: 503, retryAfter: "7", typ: "server_error"},
		{name: "openai json 400", ct: "application/json", body: `{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":null}}`, status: 400, pass: true},
		{name: "fastapi json as text", ct: "text/plain", body: `{"detail":"There was an error parsing the body"}`, status: 400, pass: true},
		{name: "json 500 to a stream", ct: "application/json", body: `{"object":"error","message":"engine dead","type":"InternalServerError","code":500}`, status: 500, stream: true, pass: true},
		// vLLM and SGLang refuse a streamed request with its error as an
		// event: the client gets the object, labelled JSON.
		{name: "vllm event-stream 400", ct: "text/event-stream", body: "data: " + vllmTooLong + "\n\ndata: [DONE]\n\n", status: 400, stream: true, extract: vllmTooLong},
		{name: "event-stream 503 busy", ct: "text/event-stream; charset=utf-8", body: "event: error\r\ndata: " + sglangBusy + "\r\n\r\n", status: 503, stream: true, retryAfter: "3", extract: sglangBusy},
		{name: "event-stream without an error object", ct: "text/event-stream", body: "data: {\"detail\":\"Traceback in /srv/app.py\"}\n\n", status: 500, stream: true, typ: "server_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tc.ct != "" {
					w.Header().Set("Content-Type", tc.ct)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing: none sent
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer be.Close()
			cfg := testConfig(be.URL)
			// One attempt: a 502 with attempts left is tried again and
			// answered by the gateway's own 502 (proxy.declined).
			cfg.Retry.Attempts = 1
			srv, _, logs := startLoggedGateway(t, cfg)
			body := chatBody
			if tc.stream {
				body = streamBody
			}
			resp := post(t, srv.URL+"/v1/chat/completions", body)
			got := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.pass {
				if got != tc.body {
					t.Fatalf("JSON error body changed: %q, want %q", got, tc.body)
				}
				return
			}
			if tc.extract != "" {
				if ct := resp.Header.Get("Content-Type"); got != tc.extract || ct != "application/json" {
					t.Fatalf("event-stream error reached the client as %q (%s), want %q (application/json)", got, ct, tc.extract)
				}
				if tc.retryAfter != "" && resp.Header.Get("Retry-After") != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", resp.Header.Get("Retry-After"), tc.retryAfter)
				}
				if strings.Contains(logs.String(), "was not JSON") {
					t.Errorf("the event-stream error was logged as wrapped:\n%s", logs.String())
				}
				return
			}
			id := resp.Header.Get("X-Request-Id")
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			typ, code, msg := apiErr(t, got)
			if typ != tc.typ || code != "upstream_error" || id == "" || !strings.Contains(msg, id) {
				t.Errorf("type %q code %q, request id %q, message %q", typ, code, id, msg)
			}
			for _, leak := range []string{"<html", "<h1>", "nginx", "Traceback", "10.0.0.7"} {
				if strings.Contains(got, leak) {
					t.Errorf("the backend's text %q reached the client: %s", leak, got)
				}
			}
			if tc.retryAfter != "" && resp.Header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", resp.Header.Get("Retry-After"), tc.retryAfter)
			}
			var line struct {
				Body string `json:"body"`
			}
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `"request_id":"`+id+`"`) && strings.Contains(l, "was not JSON") {
					json.Unmarshal([]byte(l), &line)
				}
			}
			if want := tc.body[:min(len(tc.body), 40)]; !strings.Contains(line.Body, want) {
				t.Errorf("log line body %q, want it to hold %q; log:\n%s", line.Body, want, logs.String())
			}
		})
	}
}

// TestFollowUpErrorThatIsNotJSONBecomesAnOpenAIError: a follow-up
// (GET /v1/responses/{id}) answered with an HTML 403 page (an auth proxy
// in front of the backend) reaches the client as an OpenAI error object
// with the 403 and the request id, the page in the log; a JSON 400 passes.
func TestFollowUpErrorThatIsNotJSONBecomesAnOpenAIError(t *testing.T) {
	for _, tc := range []struct {
		status   int
		ct, body string
		pass     bool
	}{
		{403, "text/html", "<html><h1>403 Forbidden</h1><p>openresty</p></html>", false},
		{400, "application/json", `{"error":{"message":"bad id","type":"invalid_request_error","param":null,"code":null}}`, true},
	} {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/v1/responses/") {
				return // a health check: 200
			}
			w.Header().Set("Content-Type", tc.ct)
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}))
		srv, _, logs := startLoggedGateway(t, testConfig(be.URL))
		resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_1", "")
		got := readAll(t, resp)
		be.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
		}
		if tc.pass {
			if got != tc.body {
				t.Errorf("JSON body changed: %s", got)
			}
			continue
		}
		id := resp.Header.Get("X-Request-Id")
		typ, code, msg := apiErr(t, got)
		if typ != "invalid_request_error" || code != "upstream_error" || !strings.Contains(msg, id) || strings.Contains(got, "openresty") {
			t.Errorf("%s", got)
		}
		if !strings.Contains(logs.String(), "403 Forbidden") {
			t.Errorf("the page is not in the log:\n%s", logs.String())
		}
	}
}
