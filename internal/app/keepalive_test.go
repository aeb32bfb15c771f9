package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A keep-alive client's varied requests all ride one connection through
// the whole server: bodies the handler reads whole, sent at once, large
// (arriving after the head: timed, netguard.TimedBody), chunked or after
// Expect: 100-continue, streamed answers, cache hits, GET, HEAD and an
// empty POST. An answer that said Connection: close on any of them (the
// unread-body close of branch guardbody misjudging a body read whole)
// would cost every such request a new connection.
func TestKeepAliveHoldsAcrossVariedRequests(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(be.Close)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n"+noProbes+
		"models:\n  - name: m\n    backends:\n      - url: %s\n", be.URL)
	writeFile(t, path, src)
	url, _ := serveApp(t, newApp(t, path))

	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, ExpectContinueTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute} // hang guard
	newConns := 0
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			newConns++
		}
	}}
	pad := strings.Repeat("x", 256<<10) // far more than one read of the listener: timed
	chat := func(stream bool, pad string) string {
		return fmt.Sprintf(`{"model":"m","stream":%v,"messages":[{"role":"user","content":"hello %s"}]}`, stream, pad)
	}
	type req struct {
		name, method, path, body string
		chunked, expect          bool
	}
	reqs := []req{
		{name: "models", method: "GET", path: "/v1/models"},
		{name: "head", method: "HEAD", path: "/healthz"},
		{name: "small chat", method: "POST", path: "/v1/chat/completions", body: chat(false, "")},
		{name: "small chat again (cache)", method: "POST", path: "/v1/chat/completions", body: chat(false, "")},
		{name: "large chat", method: "POST", path: "/v1/chat/completions", body: chat(false, pad)},
		{name: "large stream", method: "POST", path: "/v1/chat/completions", body: chat(true, pad)},
		{name: "chunked chat", method: "POST", path: "/v1/chat/completions", body: chat(false, pad), chunked: true},
		{name: "chunked stream", method: "POST", path: "/v1/chat/completions", body: chat(true, pad), chunked: true},
		{name: "expect 100-continue", method: "POST", path: "/v1/chat/completions", body: chat(false, pad), expect: true},
		{name: "empty post", method: "POST", path: "/v1/chat/completions"},
	}
	for round := range 2 {
		for _, rq := range reqs {
			var body io.Reader = http.NoBody
			if rq.body != "" {
				body = strings.NewReader(rq.body)
				if rq.chunked {
					body = io.MultiReader(body) // no length known: sent chunked
				}
			}
			r, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), rq.method, url+rq.path, body)
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			if rq.expect {
				r.Header.Set("Expect", "100-continue")
			}
			resp, err := client.Do(r)
			if err != nil {
				t.Fatalf("round %d, %s: %v", round, rq.name, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Close {
				t.Errorf("round %d, %s: status %d said Connection: close", round, rq.name, resp.StatusCode)
			}
		}
	}
	if newConns != 1 {
		t.Fatalf("%d connections for %d requests, want 1", newConns, 2*len(reqs))
	}
}
