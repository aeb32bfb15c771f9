package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// A deterministic chat request with "store": true must reach the backend
// itself: the backend stores the completion (with the caller's metadata)
// under the id it answers, which the caller then gets or lists. It used
// to be answered from the cache (HIT: nothing stored, the first caller's
// id) and coalesced with identical requests in flight (one backend call,
// every caller given the same id). Now it bypasses both (X-Cache:
// BYPASS). Three identical ones at once: each reaches the backend.
func TestChatStoredNotCoalesced(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	t.Cleanup(s.Close)
	var calls atomic.Int32
	gate := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-gate
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(be.Close)
	url, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	t.Cleanup(func() { // first: neither the gateway's drain nor be.Close waits on the gate
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	const n = 3
	answers := make(chan chatAnswer, n)
	for range n {
		go func() { answers <- askChat(t, url, storedChat) }()
	}
	// Each identical request must reach the backend; one that joined a
	// flight instead would wait there for the first one's answer.
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for calls.Load() < n {
		fs := gw.Runtime().flights
		fs.mu.Lock()
		for _, f := range fs.m {
			if f.waiters > 1 {
				fs.mu.Unlock()
				t.Fatalf("stored requests coalesced: a flight with %d waiters, %d backend calls", f.waiters, calls.Load())
			}
		}
		fs.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("backend saw %d of %d stored requests", calls.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(gate)
	ids := map[string]bool{}
	for range n {
		a := <-answers
		if a.xcache != "BYPASS" {
			t.Errorf("stored request in flight: X-Cache %q, want BYPASS", a.xcache)
		}
		ids[a.id] = true
	}
	if len(ids) != n || calls.Load() != n {
		t.Fatalf("%d distinct ids of %d answers, %d backend calls", len(ids), n, calls.Load())
	}
}

// TestChatStoredNotServedFromCache: a stored request after an identical
// one is not a HIT (it was: the backend stored nothing for it and it got
// the first caller's id); without store the same request is.
func TestChatStoredNotServedFromCache(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	t.Cleanup(s.Close)
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(be.Close)
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	ids := map[string]bool{}
	for i := range 2 {
		a := askChat(t, url, storedChat)
		if a.xcache != "BYPASS" || ids[a.id] {
			t.Fatalf("stored request %d: X-Cache %q id %q (seen: %v), want BYPASS and its own id", i, a.xcache, a.id, ids)
		}
		ids[a.id] = true
	}
	if calls.Load() != 2 {
		t.Fatalf("backend saw %d of 2 stored requests", calls.Load())
	}
	for _, want := range []string{"MISS", "HIT"} {
		if a := askChat(t, url, `{"model":"m1","temperature":0,"store":false,"messages":[{"role":"user","content":"hi"}]}`); a.xcache != want {
			t.Fatalf("store:false: X-Cache %q, want %s", a.xcache, want)
		}
	}
}

// storedChat is a deterministic chat request whose completion the
// backend stores, with its caller's metadata.
const storedChat = `{"model":"m1","temperature":0,"store":true,"metadata":{"user":"u1"},"messages":[{"role":"user","content":"hi"}]}`

// chatAnswer is what a caller of a stored completion keeps: its id, and
// where the answer came from.
type chatAnswer struct{ id, xcache string }

func askChat(t *testing.T, url, body string) chatAnswer {
	t.Helper()
	resp := post(t, url, body)
	got := readAll(t, resp)
	var v struct{ ID string }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(got), &v) != nil {
		t.Errorf("%d %s", resp.StatusCode, got)
	}
	return chatAnswer{v.ID, resp.Header.Get("X-Cache")}
}
