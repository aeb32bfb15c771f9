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
// "context canceled", which name no cause an operator can look up. The
// backend's cut is also an unexpected error, in a "request failed" line
// whose cause is a few stable words (it was Go's text: "unexpected EOF"),
// Go's text in its detail.
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
			if tc.clientLeaves {
				return
			}
			failed := logLines(t, logs, "request failed")
			if len(failed) != 1 || failed[0]["cause"] != "connection closed" || failed[0]["detail"] == "" {
				t.Errorf("request failed lines %v, want one with cause \"connection closed\" and Go's text in detail", failed)
			}
		})
	}
}

// A request no backend answered has no time to first token: its access
// line had "ttft_ms":0, which reads as an instant first token. The field
// is left out then, and kept for an answer that was sent.
func TestAccessLineOmitsTTFTWhenNothingWasSent(t *testing.T) {
	ob := newOKBackend(t)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there: upstream_unreachable
	cfg := testConfig(ob.URL)
	cfg.Log.Access = true
	unreachable := testConfig(gone.URL).Models[0]
	unreachable.Name = "m2"
	cfg.Models = append(cfg.Models, unreachable)
	srv, _, logs := loggedGateway(t, cfg)

	post := func(model string) int {
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, model := range []string{"m1", "m2", "no-such-model"} {
		post(model)
	}
	srv.Close() // waits for the handlers, which write the lines

	lines := accessLines(t, logs)
	if len(lines) != 3 {
		t.Fatalf("%d access lines, want 3:\n%s", len(lines), logs.String())
	}
	for _, l := range lines {
		ttft, has := l["ttft_ms"]
		switch l["model"] {
		case "m1":
			if l["status"] != float64(http.StatusOK) || !has {
				t.Errorf("served line: status %v, ttft_ms %v (present %v), want 200 and a ttft_ms", l["status"], ttft, has)
			}
		default:
			if l["error"] == nil || has {
				t.Errorf("refused line (model %v, error %v) has ttft_ms %v, want none", l["model"], l["error"], ttft)
			}
		}
	}
}
