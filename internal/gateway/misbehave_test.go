package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A backend's redirect (or a 304 to a POST) is not an answer to an
// inference request: relayed, it sends the client, prompt and key, to
// wherever the backend points (a client that follows redirects replays a
// 307's POST there). It is refused like a malformed answer: a healthy
// peer answers, the backend is charged a failure, nothing is followed.
func TestRedirectIsNotRelayed(t *testing.T) {
	for _, code := range []int{301, 302, 303, 304, 307, 308} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var calls atomic.Int32
			bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Location", "http://10.255.255.1/v1/chat/completions")
				w.WriteHeader(code)
			}))
			t.Cleanup(bad.Close)
			good := newOKBackend(t)
			cfg := testConfig(bad.URL, good.URL)
			cfg.Retry.MinPerSecond = 100
			srv, gw := startGateway(t, cfg)
			resp := postNoFollow(t, srv.URL+"/v1/chat/completions", chatBody)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || resp.Header.Get("Location") != "" || !strings.HasPrefix(body, `{"id":"x"`) {
				t.Fatalf("status %d Location %q body %q, want the healthy peer's answer", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if b := gw.Runtime().Pools["m1"].Backends[0]; calls.Load() != 1 || b.Failures() != 1 {
				t.Fatalf("redirecting backend: %d calls, %d failures; want 1 and 1", calls.Load(), b.Failures())
			}

			// Alone, the client gets the gateway's 502, never the Location.
			srv, _ = startGateway(t, testConfig(bad.URL))
			resp = postNoFollow(t, srv.URL+"/v1/chat/completions", chatBody)
			body = readAll(t, resp)
			if _, c, _ := apiErr(t, body); resp.StatusCode != 502 || c != "upstream_bad_response" || resp.Header.Get("Location") != "" {
				t.Fatalf("alone: status %d code %q Location %q", resp.StatusCode, c, resp.Header.Get("Location"))
			}
		})
	}
}

// postNoFollow posts body to url and returns the answer as sent: a
// redirect is not followed.
func postNoFollow(t *testing.T, url, body string) *http.Response {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A stream that carries the backend's own error event is relayed as it
// is (its status line is long gone), but it is not an answer to replay:
// with [DONE] after it, it was cached and every identical request got the
// failure back for the TTL.
func TestStreamWithAnErrorEventIsNotCached(t *testing.T) {
	const first = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
	for name, ev := range map[string]string{
		"openai": `{"error":{"message":"CUDA out of memory","type":"server_error","code":500}}`,
		"vllm":   `{"object":"error","message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}`,
	} {
		t.Run(name, func(t *testing.T) {
			stream := first + "data: " + ev + "\n\ndata: [DONE]\n\n"
			be, calls := rawBackend(t, "text/event-stream", stream)
			url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
			const body = `{"model":"m1","temperature":0,"stream":true,"messages":[{"role":"user","content":"same words"}]}`
			for i := 0; i < 2; i++ {
				status, h, got := sendRaw(t, url, body)
				if status != 200 || got != stream || h.Get("X-Cache") != "MISS" {
					t.Fatalf("request %d: status %d X-Cache %q body %q", i, status, h.Get("X-Cache"), got)
				}
			}
			if n := calls.Load(); n != 2 {
				t.Fatalf("backend called %d times, want 2: the failed stream was replayed from the cache", n)
			}
		})
	}
}
