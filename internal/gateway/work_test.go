package gateway

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestOutstandingWorkFollowsTheRequest: while a request is at its backend,
// the backend carries the request's estimated tokens (what p2c_ewma
// balances, and sluice_backend_outstanding_tokens shows); when it ends, they
// are gone, so routing never steers by work that has finished.
func TestOutstandingWorkFollowsTheRequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	srv, gw := startGateway(t, testConfig(be))
	// The request's goroutine reports on done whatever happens (a t.Fatal
	// there would leave this test waiting on entered or done for good).
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}`))
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("the request ended before reaching the backend: %v", err)
	}
	b := gw.Runtime().Pools["m1"].Backends[0]
	if w := b.Work(); w < 1000 {
		t.Errorf("outstanding work while the request runs = %d tokens, want at least its max_tokens (1000)", w)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The client can have the whole answer a moment before the handler
	// releases the backend: wait for the release, not for a time.
	for deadline := time.Now().Add(10 * time.Second); b.Inflight() != 0 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if n := b.Inflight(); n != 0 {
		t.Fatalf("request still outstanding on the backend after 10s: %d", n)
	}
	if w := b.Work(); w != 0 {
		t.Errorf("outstanding work after the request ended = %d tokens, want 0", w)
	}
}
