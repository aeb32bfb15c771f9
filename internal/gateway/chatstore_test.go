package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A chat completion with "store": true may be kept by the backend
// (OpenAI's stored completions), as a Responses request is: it goes to a
// second backend only when the first provably did not take it. It used
// to be retried after a 502 like any chat request, so the failed backend
// could hold one stored completion and the second another. Without store
// (or store:false) a 502 is still retried. Two requests, round robin over
// a backend answering 502 and a good one: one of them meets the 502 first.
func TestChatStoredNotRetriedAfter502(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		failed    int32 // 502s relayed
		goodPosts int32
	}{
		{"stored", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"store":true}`, 1, 1},
		{"store false", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"store":false}`, 0, 2},
		{"no store", `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`, 0, 2},
		{"stored stream", `{"model":"m1","messages":[{"role":"user","content":"hi"}],"store":true,"stream":true}`, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, badPosts := failingResp(t, http.StatusBadGateway, "")
			var goodPosts atomic.Int32
			good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if r.Method != http.MethodPost {
					http.NotFound(w, r)
					return
				}
				goodPosts.Add(1)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
			}))
			defer good.Close()
			cfg := testConfig(bad.URL, good.URL)
			cfg.Retry.Attempts = 2
			srv, _ := startGateway(t, cfg)
			var failed int32
			for i := range 2 {
				resp := post(t, srv.URL+"/v1/chat/completions", tc.body)
				got := readAll(t, resp)
				switch resp.StatusCode {
				case http.StatusBadGateway:
					failed++
				case http.StatusOK:
				default:
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
				}
			}
			if failed != tc.failed || goodPosts.Load() != tc.goodPosts || badPosts.Load() != 1 {
				t.Fatalf("502s relayed %d, good backend's posts %d, failing backend's %d; want %d, %d, 1",
					failed, goodPosts.Load(), badPosts.Load(), tc.failed, tc.goodPosts)
			}
		})
	}
}
