package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// TestStaleWhileRevalidateFreshnessJittered: answers stored together
// with stale-while-revalidate on must not all be refreshed together, or
// each of their keys sends its refresh upstream at the same moment (the
// avalanche the TTL jitter is there against). 40 keys stored at one
// instant, looked up just past the TTL: every one is answered from the
// cache (STALE), and only those whose own jittered freshness has passed
// (about half) are refreshed: they turn HIT once their refresh is stored,
// the others stay STALE at this instant. Before the freshness was
// jittered every one was refreshed; before the jitter window was STALE,
// the other half were MISSes, each sent to the backend.
func TestStaleWhileRevalidateFreshnessJittered(t *testing.T) {
	ok := newOKBackend(t)
	cfg := testConfig(ok.URL)
	cfg.Cache.TTL = config.Duration(100 * time.Second)
	cfg.Cache.StaleWhileRevalidate = config.Duration(time.Hour)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	tiered := newTestTiered(t, cache.TieredOptions{}) // the default jitter, ±10%
	memo, err := cache.NewMemo(1000)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Cache, d.Now, d.CacheMemo = tiered, now, memo })
	url := srv.URL + "/v1/chat/completions"
	const keys = 40
	lookup := func(i int) string {
		body := fmt.Sprintf(`{"model":"m1","temperature":0,"messages":[{"role":"user","content":"k%d"}]}`, i)
		resp := post(t, url, body)
		readAll(t, resp)
		return resp.Header.Get("X-Cache")
	}
	for i := range keys {
		if x := lookup(i); x != "MISS" {
			t.Fatalf("key %d: %s, want MISS", i, x)
		}
	}
	stored := ok.calls.Load()
	clock.Add(int64(100*time.Second) + 1) // just past the TTL
	for i := range keys {
		if x := lookup(i); x != "STALE" {
			t.Fatalf("key %d just past the TTL: %s, want STALE", i, x)
		}
	}
	// The refreshes land on their own time; then the keys refreshed are
	// HIT and the rest STALE, and no lookup starts another.
	hits := 0
	eventually(t, "the refreshes stored", func() bool {
		hits = 0
		for i := range keys {
			switch x := lookup(i); x {
			case "HIT":
				hits++
			case "STALE":
			default:
				t.Fatalf("key %d after the refreshes: %s", i, x)
			}
		}
		return hits > 0 && hits == int(ok.calls.Load()-stored)
	})
	if hits == keys {
		t.Fatalf("%d of %d keys stored together were refreshed together at the TTL, want a spread", hits, keys)
	}
	t.Logf("%d of %d refreshed at the TTL", hits, keys)
}

// TestCachedStreamWithoutUsageAnswersNoUsageRequest: a backend sends a
// stream's usage chunk only when stream_options.include_usage asks (the
// simulator, like vLLM), and stream_options is not part of the cache key.
// A stream stored without it used to answer an include_usage stream with
// no usage chunk (HIT); now that request is a MISS whose answer, with its
// usage, replaces the entry. (A JSON request misses too:
// TestJSONAfterAStreamWithoutUsageCarriesUsage.)
func TestCachedStreamWithoutUsageAnswersNoUsageRequest(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	srv := startCachingGateway(t, be.URL)
	url := srv.URL + "/v1/chat/completions"
	body := `{"model":"m1","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"usage?"}]%s}`
	get := func(extra string) (string, string) {
		resp := post(t, url, fmt.Sprintf(body, extra))
		b := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", extra, resp.StatusCode, b)
		}
		return resp.Header.Get("X-Cache"), b
	}
	const usageChunk = `"choices":[],"usage":{`
	if x, b := get(`,"stream":true`); x != "MISS" || strings.Contains(b, `"usage":{`) {
		t.Fatalf("first stream: %s, usage chunk unasked: %v", x, strings.Contains(b, `"usage":{`))
	}
	if x, b := get(`,"stream":true,"stream_options":{"include_usage":true}`); !strings.Contains(b, usageChunk) {
		t.Fatalf("include_usage stream after a stream stored without usage: X-Cache %s, no usage chunk: %s", x, b)
	}
	// The stream with usage now answers both kinds of stream.
	if x, b := get(`,"stream":true,"stream_options":{"include_usage":true}`); x != "HIT" || !strings.Contains(b, usageChunk) {
		t.Fatalf("include_usage stream: X-Cache %s, body %s", x, b)
	}
	if x, b := get(`,"stream":true`); x != "HIT" || strings.Contains(b, `"usage":{`) {
		t.Fatalf("stream without include_usage: X-Cache %s, body %s", x, b)
	}
	if n := s.Stats().Requests; n != 2 {
		t.Fatalf("backend saw %d requests, want 2", n)
	}
}

// TestCoalescedFollowersGetNoLeadersCookie: a backend's Set-Cookie
// answers the one request that reached it. Coalesced followers used to
// get the leader's cookie (and would with cache.shared across tenants);
// a cache hit never replayed it. Since branch smallleft4 the leader does
// not get it either (TestBackendCookiesReachNoClient).
func TestCoalescedFollowersGetNoLeadersCookie(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=leaders-own")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(be.Close) // after the gate opens (a defer would run before it)
	url, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	openAtCleanup(t, release)
	const n = 5
	cookies := make(chan string, n)
	for range n {
		go func() {
			resp := post(t, url, fmt.Sprintf(detBody, ""))
			readAll(t, resp)
			cookies <- resp.Header.Get("X-Cache") + " " + resp.Header.Get("Set-Cookie")
		}()
	}
	waitFlight(t, gw, n)
	close(release)
	got := map[string]int{}
	for range n {
		got[<-cookies]++
	}
	if got["MISS "] != 1 || got["COALESCED "] != n-1 || calls.Load() != 1 {
		t.Fatalf("X-Cache and Set-Cookie of %d clients: %v (backend calls %d), want one MISS, the rest COALESCED, no cookie", n, got, calls.Load())
	}
}

// TestCoalescedIncludeUsageFollowerOfAStreamWithoutUsage: a follower that
// asks for the usage chunk (stream_options.include_usage) of a leader's
// stream that did not ask for it — so the backend sends none — sends its
// own request (2 backend calls; before, 1: it got the leader's stream,
// without the usage chunk it asked for).
func TestCoalescedIncludeUsageFollowerOfAStreamWithoutUsage(t *testing.T) {
	be := &gatedStream{release: make(chan struct{})}
	srv := httptestServer(t, be)
	url, gw := startCachingGatewayCfg(t, testConfig(srv), nil, time.Now)
	done := make(chan string, 2)
	ask := func(extra string) {
		resp := post(t, url, fmt.Sprintf(detBody, extra))
		readAll(t, resp)
		done <- resp.Header.Get("X-Cache")
	}
	go ask(`,"stream":true`)
	waitFlight(t, gw, 1)
	go ask(`,"stream":true,"stream_options":{"include_usage":true}`)
	fs := gw.Runtime().flights
	deadline := time.Now().Add(30 * time.Second)
	for { // the follower joined (old code) or went upstream on its own
		fs.mu.Lock()
		joined := false
		for _, f := range fs.m {
			joined = f.waiters == 2
		}
		fs.mu.Unlock()
		if joined || be.calls.Load() == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(be.release)
	<-done
	<-done
	if n := be.calls.Load(); n != 2 {
		t.Fatalf("backend calls %d, want 2: the include_usage follower must not get a stream without usage", n)
	}
}
