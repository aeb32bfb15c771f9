package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A 429 whose Retry-After asks for days (here 10^20 s, read as the 24 h
// cap) kept its backend busy for all of it, through every answer it gave
// afterwards. The first request answered after the push-back ends it.
func TestAnswerAfterPushBackEndsBusy(t *testing.T) {
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "99999999999999999999")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"busy","type":"rate_limit_error","code":null}}`)
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(be.Close)
	srv, gw := startGateway(t, testConfig(be.URL))
	b := gw.Runtime().Pools["m1"].Backends[0]
	const body = `{"model":"m1","messages":[{"role":"user","content":"hi"}]}`
	resp := post(t, srv.URL+"/v1/chat/completions", body)
	if readAll(t, resp); resp.StatusCode != http.StatusTooManyRequests || b.State(time.Now()) != endpoint.StateBusy {
		t.Fatalf("the push-back: status %d, state %v; want 429, busy", resp.StatusCode, b.State(time.Now()))
	}
	resp = post(t, srv.URL+"/v1/chat/completions", body)
	if readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("the request after it: status %d, want 200 from the busy backend (the only one)", resp.StatusCode)
	}
	if got := b.State(time.Now()); got != endpoint.StateHealthy {
		t.Fatalf("after the backend answered: %v, want healthy", got)
	}
}
