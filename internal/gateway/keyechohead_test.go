package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// TestResponseHeadDoesNotEchoTheBackendKey: a keyed backend that reflects
// the Authorization it got into a response header (a debugging echo, a
// proxy's X-Echo-* header) handed the operator's key to the client: the
// bodies were scrubbed, the heads relayed as they came (measured through
// the binary: "X-Echo-Auth: Bearer <api_key>" on every answer). The key is
// now masked in the head of every answer of a keyed backend: a JSON 200,
// a stream, an error, a 429 relayed with the gateway's Retry-After, and a
// Responses follow-up, through both upstream clients.
func TestResponseHeadDoesNotEchoTheBackendKey(t *testing.T) {
	const key = "sk-upstream-SECRET-0123456789"
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		sse                      bool
	}{
		{"json", http.MethodPost, "/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, http.StatusOK, false},
		{"sse", http.MethodPost, "/v1/chat/completions", `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`, http.StatusOK, true},
		{"401", http.MethodPost, "/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, http.StatusUnauthorized, false},
		{"429", http.MethodPost, "/v1/chat/completions", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, http.StatusTooManyRequests, false},
		{"followup", http.MethodGet, "/v1/responses/resp_x", "", http.StatusOK, false},
	} {
		for _, client := range []string{config.UpstreamLean, config.UpstreamNetHTTP} {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				auth := r.Header.Get("Authorization")
				w.Header().Set("X-Echo-Auth", auth)
				w.Header().Add("X-Echo-Auth", "again "+auth+" and "+auth)
				switch {
				case c.sse:
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
				case c.status == http.StatusOK && c.method == http.MethodGet:
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"id":"resp_x","object":"response","status":"completed"}`)
				case c.status == http.StatusOK:
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
				default:
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(c.status)
					io.WriteString(w, `{"error":{"message":"no","type":"invalid_request_error","code":"x"}}`)
				}
			}))
			cfg := testConfig(be.URL)
			cfg.UpstreamClient = client
			cfg.Models[0].Backends[0].APIKey = key
			srv, _ := startGateway(t, cfg)
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			be.Close()
			head := fmt.Sprint(resp.Header)
			echo := resp.Header.Values("X-Echo-Auth")
			if strings.Contains(head, "SECRET") || resp.StatusCode != c.status ||
				len(echo) != 2 || echo[0] != "Bearer xxxxx" || echo[1] != "again Bearer xxxxx and Bearer xxxxx" {
				t.Errorf("%s %s: %d, head %s; want %d with X-Echo-Auth masked", c.name, client, resp.StatusCode, head, c.status)
			}
		}
	}
}
