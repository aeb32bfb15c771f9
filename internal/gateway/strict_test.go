package gateway

import (
	"encoding/json"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// errorObject decodes an OpenAI error object, param included.
func errorObject(t *testing.T, body string) (code, param, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == nil {
		t.Fatalf("not an OpenAI error object with a code: %q (%v)", body, err)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return *e.Error.Code, param, e.Error.Message
}

// leaksInternals reports text that is Go's, not the API's.
func leaksInternals(msg string) bool {
	for _, s := range []string{"peekFields", "Go struct", "Go value", "unmarshal", "json:", "*string", "127.0.0.1", "EOF", "dial tcp"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// TestStrictBodyThroughGateway: a body a Python backend would read
// differently from Go's case-insensitive decoder, a duplicated field the
// gateway acts on, a wrong type or an out-of-range number is a 400 naming
// the field, and never reaches the backend.
func TestStrictBodyThroughGateway(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	cases := []struct {
		body, code, param, msg string
	}{
		{`{"model":"m1","Model":"m2","messages":[]}`, "ambiguous_parameter", "Model", `"Model" differs only in case from "model"`},
		{`{"Model":"m2","model":"m1","messages":[]}`, "ambiguous_parameter", "Model", ""},
		{`{"model":"m1","model":"m2","messages":[]}`, "duplicate_parameter", "model", ""},
		{`{"model":"m1","Stream":true,"messages":[]}`, "ambiguous_parameter", "Stream", ""},
		{`{"model":"m1","max_tokens":4,"MAX_TOKENS":900000}`, "ambiguous_parameter", "MAX_TOKENS", ""},
		{`{"model":"m1","stream":true,"stream_options":{"include_usage":false,"Include_usage":true}}`, "ambiguous_parameter", "stream_options.Include_usage", ""},
		{`{"model":"m1","max_tokens":"7"}`, "invalid_type", "max_tokens", "max_tokens must be an integer"},
		{`{"model":"m1","max_tokens":7.5}`, "invalid_type", "max_tokens", "max_tokens must be an integer"},
		{`{"model":"m1","stream":"yes"}`, "invalid_type", "stream", "stream must be a boolean"},
		{`{"model":["m1"]}`, "invalid_type", "model", "model must be a string"},
		{`{"model":"m1","max_tokens":1073741824}`, "invalid_value", "max_tokens", "between 0 and 16777216"},
		{`{"model":"m1","max_completion_tokens":-3}`, "invalid_value", "max_completion_tokens", ""},
		{`{"model":"m1","n":0}`, "invalid_value", "n", "between 1 and 128"},
		{`{"model":"m1","n":100000}`, "invalid_value", "n", ""},
		{`{"model":"m1",}`, "invalid_json", "", "not valid JSON"},
	}
	for _, c := range cases {
		resp := post(t, srv.URL+"/v1/chat/completions", c.body)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", c.body, resp.StatusCode, body)
			continue
		}
		code, param, msg := errorObject(t, body)
		if code != c.code || param != c.param || !strings.Contains(msg, c.msg) || leaksInternals(msg) {
			t.Errorf("%s: code %q param %q message %q; want %q %q containing %q, no Go internals", c.body, code, param, msg, c.code, c.param, c.msg)
		}
	}
	if n := be.calls.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the backend", n)
	}
	// Unknown fields are the backend's business, whatever their case.
	ok := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"top_p":1,"Top_P":1,"top_p":2}`
	if resp := post(t, srv.URL+"/v1/chat/completions", ok); resp.StatusCode != 200 {
		t.Fatalf("status %d for unknown fields: %s", resp.StatusCode, readAll(t, resp))
	} else {
		readAll(t, resp)
	}
}

// TestAmbiguousModelNeverReachesSimulator: with the simulator behind, the
// request the issue reported ("model" and "Model", routed by one and
// answered by the other) is refused; the escaped spelling of "model" a
// Python decoder resolves is read as "model".
func TestAmbiguousModelNeverReachesSimulator(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	t.Cleanup(be.Close)
	srv, _ := startGateway(t, testConfig(be.URL))
	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","Model":"other","messages":[{"role":"user","content":"hi"}]}`)
	if body := readAll(t, resp); resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	resp = post(t, srv.URL+"/v1/chat/completions", `{"mod\u0065l":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`)
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"model":"m1"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// TestControlHeadersValidated: an unreadable control header is a 400
// naming it; unknown Prefer preferences are ignored (RFC 7240), and a
// respond-async hidden in another preference's quoted value is not one.
func TestControlHeadersValidated(t *testing.T) {
	be := newOKBackend(t)
	srv, _ := startGateway(t, testConfig(be.URL))
	for _, c := range []struct{ header, value string }{
		{"X-Sluice-Priority", "urgent"},
		{"X-Sluice-Priority", "batch,interactive"},
		{"X-Sluice-Max-Wait", "soon"},
		{"X-Sluice-Max-Wait", "-5s"},
		{"X-Sluice-Max-Wait", "0"},
		{"X-Sluice-Max-Wait", "99999999999999999999"},
		{"X-Sluice-Max-Wait", "2562047h"},
		{"Prefer", "respond-async=yes"},
		{"Prefer", "wait=5, respond-async junk"},
	} {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, c.header, c.value)
		body := readAll(t, resp)
		if resp.StatusCode != 400 {
			t.Errorf("%s: %s: status %d, want 400: %s", c.header, c.value, resp.StatusCode, body)
			continue
		}
		if code, param, _ := errorObject(t, body); code != "invalid_header" || param != c.header {
			t.Errorf("%s: %s: code %q param %q", c.header, c.value, code, param)
		}
	}
	if n := be.calls.Load(); n != 0 {
		t.Fatalf("%d refused requests reached the backend", n)
	}
	for _, c := range []struct{ header, value string }{
		{"X-Sluice-Priority", "Batch"},
		{"X-Sluice-Priority", "interactive"},
		{"X-Sluice-Max-Wait", "1500"},
		{"X-Sluice-Max-Wait", "2s"},
		{"Prefer", "handling=lenient, wait=10"},
		{"Prefer", `foo="a,respond-async", return=minimal`},
		{"Prefer", "respond-asyncx"},
	} {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, c.header, c.value)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Errorf("%s: %s: status %d, want 200 (served synchronously): %s", c.header, c.value, resp.StatusCode, body)
		}
	}
}

// TestUnexpectedErrorIsGenericAndLogged: a backend that breaks the
// connection makes an error the gateway has no specific answer for; the
// client gets a generic message with the request id, never the transport's
// text (which names addresses), and the log has the cause in full.
func TestUnexpectedErrorIsGenericAndLogged(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Write([]byte("HTTP/1.1 2x0 garbage\r\n\r\n"))
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}))
	t.Cleanup(broken.Close)
	cfg := testConfig(broken.URL)
	cfg.Retry.Attempts = 1
	logs := &logbuf.Buffer{}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: reg, Now: time.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })

	resp := post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","messages":[]}`, "X-Request-Id", "req-unexpected-1")
	body := readAll(t, resp)
	if resp.StatusCode < 500 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	_, _, msg := errorObject(t, body)
	if leaksInternals(msg) || strings.Contains(msg, "malformed") || strings.Contains(msg, broken.Listener.Addr().String()) {
		t.Fatalf("message leaks internal text: %q", msg)
	}
	if testing.Verbose() {
		t.Logf("client saw %q; log: %s", msg, logs.String())
	}
	if !strings.Contains(msg, "req-unexpected-1") {
		t.Fatalf("message %q does not carry the request id", msg)
	}
	if l := logs.String(); !strings.Contains(l, "req-unexpected-1") || !strings.Contains(l, "cause=") {
		t.Fatalf("the cause is not logged with the request id: %s", l)
	}
}

// TestMidStreamErrorIsGeneric: a stream the backend cuts short ends with an
// in-band error event that carries the request id, not the transport's
// text; the cause is logged in full.
func TestMidStreamErrorIsGeneric(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"a\":1}\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection mid-stream
	}))
	t.Cleanup(broken.Close)
	logs := &logbuf.Buffer{}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(testConfig(broken.URL), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: reg, Now: time.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })

	body := readAll(t, post(t, srv.URL+"/v1/chat/completions", `{"model":"m1","stream":true}`, "X-Request-Id", "req-cut-1"))
	i := strings.Index(body, `{"error"`)
	if i < 0 {
		t.Fatalf("no error event in %q", body)
	}
	_, _, msg := errorObject(t, strings.TrimSpace(body[i:]))
	if leaksInternals(msg) || strings.Contains(msg, "unexpected") || !strings.Contains(msg, "req-cut-1") {
		t.Fatalf("in-band error %q: want a generic message with the request id", msg)
	}
	if l := logs.String(); !strings.Contains(l, "req-cut-1") || !strings.Contains(l, "cause=") {
		t.Fatalf("the cause is not logged: %s", l)
	}
}
