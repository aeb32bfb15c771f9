package batchapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/openai"
)

// FuzzParseRoute: a path is a route or not; a route's id is one non-empty
// path segment of the path itself, and IsRoute agrees.
func FuzzParseRoute(f *testing.F) {
	for _, p := range []string{"/v1/files", "/v1/files/file-abc/content", "/v1/batches/b_1/cancel", "/v1/jobs/x", "/v1/jobs//", "/v1/files/a/b/c", "/v2/files"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, id := parseRoute(path)
		if IsRoute(path) != (rt != routeNone) {
			t.Fatalf("IsRoute disagrees with parseRoute for %q", path)
		}
		if rt == routeNone {
			return
		}
		if !strings.HasPrefix(path, "/v1/") {
			t.Fatalf("route %v for %q outside /v1/", rt, path)
		}
		if id != "" && (strings.Contains(id, "/") || !strings.Contains(path, "/"+id)) {
			t.Fatalf("id %q is not a segment of %q", id, path)
		}
	})
}

// FuzzParseWebhook: an accepted webhook is an absolute http(s) URL with a
// host, within the length bound, and accepting it again changes nothing;
// a refusal is a 400 naming the header.
func FuzzParseWebhook(f *testing.F) {
	for _, s := range []string{"https://example.com/hook", "http://10.0.0.1:8080/x?y=1", "ftp://x", "https://", "//host/x", " https://a.b/c ", "https://user:pw@h/", "http://[::1]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseWebhook(raw)
		if err != nil {
			var oe *openai.Error
			if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest || oe.Param != WebhookHeader {
				t.Fatalf("refusal of %q is not a 400 naming the header: %v", raw, err)
			}
			return
		}
		p, perr := url.Parse(u)
		if perr != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Hostname() == "" || len(u) > maxWebhookLen+16 {
			t.Fatalf("accepted %q as %q", raw, u)
		}
		if again, err := ParseWebhook(u); err != nil || again != u {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, u, again, err)
		}
	})
}

// FuzzDecodeCreateBatch: any body is decoded or refused with an API error
// whose text names no Go type.
func FuzzDecodeCreateBatch(f *testing.F) {
	for _, s := range []string{`{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
		`{"input_file_id":1}`, `{"metadata":{"a":1}}`, `{"metadata":[]}`, `[`, `null`, `{"endpoint":"x"} trailing`,
		`{"Endpoint":"x","endpoint":"y"}`, `{"output_expires_after":{"anchor":"created_at","x":1}}`, "{\"metadata\":{\"k\":\"\xff\"}}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := decodeCreateBatch(bytes.NewReader(body))
		if err == nil {
			// Accepted: one JSON object of UTF-8 text whose keys are all
			// ones the endpoint takes, exactly as written.
			var m map[string]json.RawMessage
			if !utf8.Valid(body) || json.Unmarshal(body, &m) != nil || m == nil {
				t.Fatalf("%q accepted", body)
			}
			for k := range m {
				if !slices.Contains(createBatchParams, k) {
					t.Fatalf("%q: unknown key %q accepted", body, k)
				}
			}
			return
		}
		var oe *openai.Error
		if !errors.As(err, &oe) {
			t.Fatalf("%q: error %v is not an API error", body, err)
		}
		for _, leak := range []string{"Go ", "createBatchRequest", "*string", "map[", "unmarshal"} {
			if strings.Contains(oe.Message, leak) {
				t.Fatalf("%q: message %q leaks %q", body, oe.Message, leak)
			}
		}
	})
}
