package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A stream cut after its head (the backend's connection dropped, or the
// client gone) is logged with an error code in the access line, as a
// refusal is, not Go's error text: the line had "unexpected EOF" and
// "context canceled", which name no cause an operator can look up.
func TestCutStreamAccessLineHasACode(t *testing.T) {
	for _, tc := range []struct {
		name, want   string
		clientLeaves bool
	}{
		{"backend cut", "upstream_error", false},
		{"client gone", "client_closed_request", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
				w.(http.Flusher).Flush()
				if tc.clientLeaves {
					<-r.Context().Done() // the gateway cancels its request when the client leaves
					return
				}
				conn, _, err := w.(http.Hijacker).Hijack() // the connection dropped mid-stream
				if err == nil {
					conn.Close()
				}
			}))
			t.Cleanup(backend.Close)
			cfg := testConfig(backend.URL)
			cfg.Log.Access = true
			srv, _, logs := loggedGateway(t, cfg)

			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions",
				strings.NewReader(`{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatalf("first line of the stream: %v", err)
			}
			if tc.clientLeaves {
				cancel()
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			cancel()
			srv.Close() // waits for the gateway's handler, which writes the line

			lines := accessLines(t, logs)
			if len(lines) != 1 {
				t.Fatalf("%d access lines, want 1:\n%s", len(lines), logs.String())
			}
			if lines[0]["error"] != tc.want {
				t.Errorf("access line error %q, want %q", lines[0]["error"], tc.want)
			}
		})
	}
}
