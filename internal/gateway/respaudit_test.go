package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Found by the black-box audit of the Responses API (docs/RELIABILITY.md).

// A follow-up path that names no response — a dot segment, which the
// backend would resolve to another of its URLs (/v1/responses/.. is /v1),
// or a trailing slash, which its router answers in its own words — is the
// gateway's 404 unknown_url, and reaches no backend.
func TestResponsesFollowUpPathsThatNameNoResponse(t *testing.T) {
	b := newRespBackend(t, "a")
	b.held["resp_1"] = true
	srv, _ := respGateway(t, nil, b)
	if resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_1", ""); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("GET resp_1: %d", resp.StatusCode)
	}
	_, before := b.counts()
	for _, path := range []string{"/v1/responses/..", "/v1/responses/%2E%2E", "/v1/responses/.", "/v1/responses/../input_items",
		"/v1/responses/resp_1/", "/v1/responses/resp_1/input_items/"} {
		resp := do(t, http.MethodGet, srv.URL+path, "")
		got := readAll(t, resp)
		if resp.StatusCode != 404 || !strings.Contains(got, `"code":"unknown_url"`) || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, got)
		}
	}
	if _, asked := b.counts(); asked != before {
		t.Fatalf("the backend was asked %d times about paths that name no response", asked-before)
	}
}

// A backend that answers a follow-up with a redirect is not relayed (the
// client, and its key, would go wherever it points): a probe asks the
// next backend, and when none holds the response the answer is the
// gateway's 503 (response_unavailable), not the 3xx.
func TestResponsesFollowUpRedirectNotRelayed(t *testing.T) {
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/responses/") {
			http.Redirect(w, r, "/steal", http.StatusTemporaryRedirect)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(redirect.Close)
	b := newRespBackend(t, "b")
	b.held["resp_held"] = true
	srv, _ := startGatewayWith(t, testConfig(redirect.URL, b.srv.URL), nil)
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/resp_held", "")
	if got := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(got, `"id":"resp_held"`) {
		t.Fatalf("GET resp_held: %d %s", resp.StatusCode, got)
	}
	resp = do(t, http.MethodGet, srv.URL+"/v1/responses/resp_nowhere", "")
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" || !strings.Contains(got, `"code":"response_unavailable"`) {
		t.Fatalf("GET resp_nowhere: %d Location %q %s", resp.StatusCode, resp.Header.Get("Location"), got)
	}
}

// A Responses stream the gateway must cut after its first token ends with
// that API's own error event (event: error, type "error", numbered after
// the last event relayed), which clients of the Responses API read by its
// type, not chat's {"error": {...}}, which has none.
func TestResponsesStreamCutEndsWithResponsesErrorEvent(t *testing.T) {
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range respEvents("resp_x", false)[:4] {
			fmt.Fprint(w, ev)
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the backend dies mid-stream
	}))
	t.Cleanup(back.Close)
	srv, _ := startGateway(t, testConfig(back.URL))
	resp := post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x","stream":true}`)
	got := readAll(t, resp)
	sent := strings.Join(respEvents("resp_x", false)[:4], "")
	tail, ok := strings.CutPrefix(got, sent)
	if !ok || !strings.HasPrefix(tail, "event: error\ndata: ") || !strings.HasSuffix(tail, "\n\n") {
		t.Fatalf("stream:\n%s", got)
	}
	var ev struct {
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
		Seq     *int    `json:"sequence_number"`
	}
	data := strings.TrimSuffix(strings.TrimPrefix(tail, "event: error\ndata: "), "\n\n")
	if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Type != "error" || ev.Code != "upstream_error" ||
		!strings.Contains(ev.Message, resp.Header.Get("X-Request-Id")) || ev.Seq == nil || *ev.Seq != 4 {
		t.Fatalf("error event %s: %+v %v", data, ev, err)
	}
}

// A follow-up whose backend cannot be reached (or answers wrongly) is the
// gateway's 502, which names no model: a follow-up names a response, and
// the message named an empty model.
func TestResponsesFollowUpFailureNamesNoEmptyModel(t *testing.T) {
	b := newRespBackend(t, "b")
	srv, _ := respGateway(t, nil, b)
	var r struct{ ID string }
	json.Unmarshal([]byte(readAll(t, post(t, srv.URL+"/v1/responses", `{"model":"m1","input":"x"}`))), &r)
	b.srv.Close() // the backend that holds it is gone
	resp := do(t, http.MethodGet, srv.URL+"/v1/responses/"+r.ID, "")
	got := readAll(t, resp)
	if r.ID == "" || resp.StatusCode != http.StatusBadGateway || !strings.Contains(got, `"code":"upstream_unreachable"`) ||
		strings.Contains(got, "model ''") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("GET %q: %d %s", r.ID, resp.StatusCode, got)
	}
}
