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

// A backend's 200 that is an empty object is well-formed, so it is
// relayed as it came, but it holds no result: cached, every identical
// request got `{}` back for the TTL.
func TestEmptyAnswerIsNotCached(t *testing.T) {
	be, calls := rawBackend(t, "application/json", "{ }")
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	const body = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"same words"}]}`
	for i := 0; i < 2; i++ {
		status, h, got := sendRaw(t, url, body)
		if status != 200 || got != "{ }" || h.Get("X-Cache") != "MISS" {
			t.Fatalf("request %d: status %d X-Cache %q body %q", i, status, h.Get("X-Cache"), got)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("backend called %d times, want 2: the empty answer was replayed from the cache", n)
	}
}

// A backend that ignores "stream" answers in the other shape. Relayed as
// it came, the client cannot read it (an SDK waiting for events gets a
// JSON body and no [DONE]; one decoding JSON gets "data: ..."); a
// coalesced flight already converted it, the plain relay did not. Both
// now answer in the shape asked for, with the same headers as any answer.
func TestAnswerInTheOtherShapeIsConverted(t *testing.T) {
	const completion = `{"id":"c1","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`
	const stream = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hel\"}}]}\n\n" +
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: [DONE]\n\n"
	for _, tc := range []struct {
		name, ct, answer, temp string
		stream                 bool
	}{
		{"json for a stream", "application/json", completion, "1", true},
		{"json for a stream, coalesced", "application/json", completion, "0", true},
		{"stream for json", "text/event-stream", stream, "1", false},
		{"stream for json, coalesced", "text/event-stream", stream, "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, _ := rawBackend(t, tc.ct, tc.answer)
			url, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
			body := `{"model":"m1","temperature":` + tc.temp + `,"stream":` + map[bool]string{true: "true", false: "false"}[tc.stream] + `,"messages":[{"role":"user","content":"hi"}]}`
			status, h, got := sendRaw(t, url, body)
			if status != 200 || h.Get("X-Request-Id") == "" || h.Get("Cache-Control") == "" {
				t.Fatalf("status %d X-Request-Id %q Cache-Control %q body %q", status, h.Get("X-Request-Id"), h.Get("Cache-Control"), got)
			}
			if tc.stream {
				if !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") || !strings.HasSuffix(got, "data: [DONE]\n\n") || !strings.Contains(got, `"content":"hello"`) {
					t.Fatalf("Content-Type %q body %q, want the answer as a stream", h.Get("Content-Type"), got)
				}
			} else if !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !strings.Contains(got, `"object":"chat.completion"`) || !strings.Contains(got, `"content":"hello"`) {
				t.Fatalf("Content-Type %q body %q, want the answer as JSON", h.Get("Content-Type"), got)
			}
			if f := gw.Runtime().Pools["m1"].Backends[0].Failures(); f != 0 {
				t.Fatalf("%d failures for a whole answer", f)
			}
		})
	}
}

// A stream sent for a plain request that is not a whole stream (cut,
// without [DONE], carrying an error event) cannot be converted: the
// client gets the gateway's 502, and the backend is charged a failure.
func TestBrokenStreamForAPlainRequestIs502(t *testing.T) {
	const ev = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
	for name, s := range map[string]string{
		"no done":     ev,
		"cut":         ev + "data: {\"id\":",
		"error event": ev + "data: {\"error\":{\"message\":\"oom\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			be, _ := rawBackend(t, "text/event-stream", s)
			srv, gw := startGateway(t, testConfig(be.URL))
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
			body := readAll(t, resp)
			if _, code, _ := apiErr(t, body); resp.StatusCode != 502 || code != "upstream_bad_response" {
				t.Fatalf("status %d code %q", resp.StatusCode, code)
			}
			if f := gw.Runtime().Pools["m1"].Backends[0].Failures(); f != 1 {
				t.Fatalf("%d failures, want 1", f)
			}
		})
	}
}
