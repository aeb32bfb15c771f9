package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// failingResp answers every POST with status (and Retry-After when ra is
// set), or, with status 0, a Responses stream broken after its lifecycle
// events (the backend has made the response); GET /health is a 404, as
// an engine without one answers.
func failingResp(t *testing.T, status int, ra string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		posts.Add(1)
		if status == 0 {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range respEvents("resp_a_1", true) {
				fmt.Fprint(w, ev)
			}
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":"status %d","type":"server_error"}}`, status)
	}))
	t.Cleanup(srv.Close)
	return srv, &posts
}

// A Responses API request the backend stores goes to a second backend
// only when the first provably did not take it: a 429, or a 503 with
// Retry-After. A 502, a 503 without Retry-After or a stream broken after
// response.created may have left a stored response there, and a retry
// would store a second, under an id the client never sees (nginx's
// proxy_next_upstream without non_idempotent). The same failures of a
// request stored nowhere (store:false) are retried as a chat completion's
// are. Two requests, round robin over a failing backend and a good one:
// whichever the first starts with, one of them meets the failing backend
// first.
func TestResponsesStoredNotRetriedWhereTheBackendMayHaveKeptIt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		ra, body  string
		failed    int // answers of the failing backend's status relayed
		goodPosts int
	}{
		{"502 stored", 502, "", `{"model":"m1","input":"hi"}`, 1, 1},
		{"502 store false", 502, "", `{"model":"m1","input":"hi","store":false}`, 0, 2},
		{"503 stored", 503, "", `{"model":"m1","input":"hi","store":true}`, 1, 1},
		{"503 Retry-After stored", 503, "1", `{"model":"m1","input":"hi"}`, 0, 2},
		{"429 stored", 429, "", `{"model":"m1","input":"hi"}`, 0, 2},
		{"stream broken after response.created, stored", 0, "", `{"model":"m1","input":"hi","stream":true}`, 1, 1},
		{"stream broken after response.created, store false", 0, "", `{"model":"m1","input":"hi","stream":true,"store":false}`, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, badPosts := failingResp(t, tc.status, tc.ra)
			good := newRespBackend(t, "b")
			cfg := testConfig(bad.URL, good.srv.URL)
			cfg.Retry.Attempts = 2
			srv, _ := startGateway(t, cfg)
			failed := 0
			for i := range 2 {
				resp := post(t, srv.URL+"/v1/responses", tc.body)
				got := readAll(t, resp)
				switch want := max(tc.status, 502); {
				case resp.StatusCode == want:
					failed++
				case resp.StatusCode != 200 || !strings.Contains(got, "resp_b_"):
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
				}
			}
			posts, _ := good.counts()
			if failed != tc.failed || posts != tc.goodPosts || badPosts.Load() != 1 {
				t.Fatalf("failures relayed %d, good backend's posts %d, failing backend's %d; want %d, %d, 1",
					failed, posts, badPosts.Load(), tc.failed, tc.goodPosts)
			}
		})
	}
}
