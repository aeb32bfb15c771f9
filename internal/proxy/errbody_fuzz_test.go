package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/sluice-gw/sluice/internal/openai"
)

// FuzzWrapForeignError: whatever an error answer's status, Content-Type,
// coding and body, the client gets JSON: the body unchanged when it was
// JSON, the object alone (labelled JSON, its length exact) when it was an
// event stream opening with an OpenAI error object (sseError), else an
// OpenAI error object with the status's type, the request id, an exact
// Content-Length and no Content-Encoding.
func FuzzWrapForeignError(f *testing.F) {
	f.Add(502, "text/html", "", []byte("<html>502 Bad Gateway</html>"))
	f.Add(500, "", "", []byte(""))
	f.Add(400, "text/plain", "", []byte(`{"detail":"x"}`))
	f.Add(401, "application/json", "gzip", []byte("\x1f\x8b"))
	f.Add(503, "text/html; charset=\"\xff\"", "br", []byte("x"))
	f.Add(429, "application/problem+json", "", []byte(" [1, 2] "))
	f.Add(400, "text/event-stream", "", []byte("data: {\"error\":{\"message\":\"too long\",\"code\":400}}\n\n"))
	f.Fuzz(func(t *testing.T, status int, ct, ce string, body []byte) {
		status = 400 + (status%200+200)%200
		h := http.Header{}
		if ct != "" {
			h["Content-Type"] = []string{ct}
		}
		if ce != "" {
			h["Content-Encoding"] = []string{ce}
		}
		resp := &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		note := wrapForeignError(resp, "req-1")
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if note == "" {
			if e := sseError(body); !encoded(resp) && len(body) <= maxScrubbed && !json.Valid(body) && e != nil {
				// An event-stream error: its object, labelled JSON.
				if !bytes.Equal(out, e) || resp.Header.Get("Content-Type") != "application/json" ||
					resp.ContentLength != int64(len(out)) || resp.Header.Get("Content-Length") != strconv.Itoa(len(out)) {
					t.Fatalf("event-stream error %q passed as %q, head %v", body, out, resp.Header)
				}
				return
			}
			if !bytes.Equal(out, body) {
				t.Fatalf("passed body changed: %q -> %q", body, out)
			}
			if !encoded(resp) && len(body) <= maxScrubbed && !json.Valid(body) {
				t.Fatalf("passed a body that is not JSON: %q", body)
			}
			return
		}
		var e struct {
			Error struct {
				Message, Type, Code string
			}
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Error.Code != "upstream_error" || e.Error.Type == "" ||
			!bytes.Contains([]byte(e.Error.Message), []byte("req-1")) {
			t.Fatalf("wrapped %q as %q (%v)", body, out, err)
		}
		if want := map[bool]string{true: openai.TypeServer, false: e.Error.Type}[status >= 500]; e.Error.Type != want {
			t.Fatalf("status %d: type %q", status, e.Error.Type)
		}
		if resp.Header.Get("Content-Length") != strconv.Itoa(len(out)) || resp.ContentLength != int64(len(out)) ||
			resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("head %v, body %d bytes", resp.Header, len(out))
		}
	})
}
