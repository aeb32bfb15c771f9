package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/sim"
)

// jsonUsage is the "usage" object of a chat.completion, nil when absent.
func jsonUsage(t *testing.T, body string) *struct{ PromptTokens, CompletionTokens int } {
	t.Helper()
	var c struct {
		Object string `json:"object"`
		Usage  *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &c); err != nil || c.Object != "chat.completion" {
		t.Fatalf("not a chat.completion: %q (%v)", body, err)
	}
	if c.Usage == nil {
		return nil
	}
	return &struct{ PromptTokens, CompletionTokens int }{c.Usage.PromptTokens, c.Usage.CompletionTokens}
}

// A stream stored without usage (its client did not ask for it) used to
// answer a later JSON request for the same prompt (HIT) with no "usage",
// which OpenAI's chat.completion always carries and the SDKs expose. Now
// that request is a miss whose answer, with usage, replaces the entry and
// answers both shapes from then on.
func TestJSONAfterAStreamWithoutUsageCarriesUsage(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	url, _ := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	body := `{"model":"m1","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"usage?"}]%s}`
	get := func(extra string) (string, string) {
		resp := post(t, url, fmt.Sprintf(body, extra))
		b := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", extra, resp.StatusCode, b)
		}
		return resp.Header.Get("X-Cache"), b
	}
	if x, _ := get(`,"stream":true`); x != "MISS" {
		t.Fatalf("first stream: X-Cache %s", x)
	}
	x, b := get("")
	if u := jsonUsage(t, b); u == nil || u.CompletionTokens != 5 {
		t.Fatalf("JSON after a stream stored without usage: X-Cache %s, usage %+v, want the backend's (5 completion tokens): %s", x, u, b)
	}
	x, b = get("")
	if u := jsonUsage(t, b); x != "HIT" || u == nil || u.CompletionTokens != 5 {
		t.Fatalf("JSON again: X-Cache %s, usage %+v", x, u)
	}
	if x, b := get(`,"stream":true`); x != "HIT" || strings.Contains(b, `"usage"`) {
		t.Fatalf("stream without include_usage from the JSON entry: X-Cache %s, usage unasked: %v", x, strings.Contains(b, `"usage"`))
	}
	if n := s.Stats().Requests; n != 2 {
		t.Fatalf("backend saw %d requests, want 2", n)
	}
}

// JSON requests arriving while a stream without usage for the same prompt
// is in flight used to join its flight and get its answer converted, with
// no "usage". Now the requests that want usage share a flight of their
// own: every JSON client gets usage, and the burst costs two backend
// calls, not one per request.
func TestCoalescedJSONBesideAStreamWithoutUsageCarriesUsage(t *testing.T) {
	release := make(chan struct{})
	jsonRelease := make(chan struct{}) // held until the JSON requests share one flight
	var calls, streams atomic.Int32
	gated := &gatedStream{release: release}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if strings.Contains(string(b), `"stream":true`) {
			streams.Add(1)
			gated.ServeHTTP(w, r)
			return
		}
		<-jsonRelease
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c2","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"one two"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(be.Close)
	url, gw := startCachingGatewayCfg(t, testConfig(be.URL), nil, time.Now)
	openAtCleanup(t, release, jsonRelease)
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		readAll(t, post(t, url, fmt.Sprintf(detBody, `,"stream":true`)))
	}()
	waitFlight(t, gw, 1)
	const n = 3
	bodies := make(chan string, n)
	for range n {
		go func() { bodies <- readAll(t, post(t, url, fmt.Sprintf(detBody, ""))) }()
	}
	got := make([]string, 0, n)
	fs := gw.Runtime().flights
	for deadline := time.Now().Add(30 * time.Second); len(got) < n; {
		select {
		case b := <-bodies:
			got = append(got, b)
			continue
		case <-time.After(5 * time.Millisecond):
		}
		fs.mu.Lock()
		// The old code: all in the stream's flight (n+1); the new: the
		// JSON requests in one flight of their own (n), held by the
		// backend until all have joined, so none can miss it.
		joined := false
		for _, f := range fs.m {
			joined = joined || f.waiters >= n
		}
		fs.mu.Unlock()
		if joined || time.Now().After(deadline) {
			break
		}
	}
	close(jsonRelease)
	close(release)
	for len(got) < n {
		got = append(got, <-bodies)
	}
	<-streamDone
	for _, b := range got {
		if u := jsonUsage(t, b); u == nil {
			t.Fatalf("a JSON request beside a stream without usage got no usage: %s", b)
		}
	}
	if c := calls.Load(); c != 2 {
		t.Fatalf("backend calls %d, want 2 (one stream, one shared JSON)", c)
	}
}

// tokenGateway serves cfg with a per-key limit of limit tokens a minute
// on a frozen clock (no refill between requests), the response cache on.
func tokenGateway(t *testing.T, cfg *config.Config, limit int64) string {
	t.Helper()
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &limit}
	clk := &frozenClock{now: time.Now()}
	url, _ := startCachingGatewayCfg(t, cfg, nil, clk.Now)
	return url
}

// remaining sends body with key k and returns the status, the tokens left
// after its own reservation, and the answer.
func remaining(t *testing.T, url, body string) (int, int, string) {
	t.Helper()
	resp := post(t, url, body, "Authorization", "Bearer k")
	b := readAll(t, resp)
	left, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil && resp.StatusCode == 200 {
		t.Fatalf("no x-ratelimit-remaining-tokens: %v", resp.Header)
	}
	return resp.StatusCode, left, b
}

// A stream whose client did not ask for usage used to keep its admission
// estimate (prompt/4 + max_tokens, or admission.default_max_tokens: 256)
// in the token buckets forever, though the simulator wrote 16 tokens.
// Now it is settled to the prompt's estimate and the tokens relayed (one
// per event carrying text), which are the backend's own count: a probe
// after it sees exactly that charged.
func TestStreamWithoutUsageSettlesToTheTokensRelayed(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	const limit = 100000
	url := tokenGateway(t, testConfig(be.URL), limit)
	stream := `{"model":"m1","messages":[{"role":"user","content":"tell me a long story"}],"stream":true}`
	// The true completion, from the same request asking for usage.
	_, _, b := remaining(t, url, strings.Replace(stream, `"stream":true`, `"stream":true,"stream_options":{"include_usage":true}`, 1))
	i := strings.LastIndex(b, `"completion_tokens":`)
	if i < 0 {
		t.Fatalf("no usage chunk: %s", b)
	}
	truth, _ := strconv.Atoi(strings.TrimRight(strings.SplitN(b[i+len(`"completion_tokens":`):], ",", 2)[0], "}"))
	if truth == 0 || truth >= 256 {
		t.Fatalf("the simulator's completion: %d tokens", truth)
	}
	status, before, b := remaining(t, url, stream)
	if status != 200 {
		t.Fatalf("stream: %d", status)
	}
	events, textBytes := relayedText(b)
	if events != truth {
		t.Fatalf("the simulator: %d tokens in %d events", truth, events)
	}
	charged, streamEst := settledCharge(t, url, stream, before)
	// The simulator's tokens are whole words (~5.6 bytes), so its text's
	// bytes / 4 are above its count (openai.CompletionTokens).
	want := int(admission.EstimateCost(len(stream), 0, 0)) + int(openai.CompletionTokens(events, textBytes))
	if charged != want || charged < int(admission.EstimateCost(len(stream), 0, 0))+truth {
		t.Fatalf("stream without usage charged %d tokens, want %d (prompt estimate + %d generated, %d bytes); its estimate was %d", charged, want, truth, textBytes, streamEst)
	}
}

// A cache hit costs the backends nothing, and used to keep its whole
// token estimate: a key's budget went on answers no backend made. Now a
// hit (fresh or stale) and a coalesced follower are charged no tokens;
// each still counts as a request.
func TestCacheHitsChargeNoTokens(t *testing.T) {
	s := sim.New(sim.Config{Model: "m1", DecodeStepBase: time.Millisecond})
	defer s.Close()
	be := httptest.NewServer(s)
	defer be.Close()
	const limit = 1000
	url := tokenGateway(t, testConfig(be.URL), limit)
	body := `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"cached"}]}` // 256 estimated
	status, first, _ := remaining(t, url, body)
	if status != 200 {
		t.Fatalf("miss: %d", status)
	}
	var lefts []int
	for range 5 { // five hits: 5 x 270 tokens would overrun the 1000
		status, left, b := remaining(t, url, body)
		if status != 200 {
			t.Fatalf("hit: %d %s (remaining before it %v)", status, b, lefts)
		}
		lefts = append(lefts, left)
	}
	for _, l := range lefts[1:] {
		if l != lefts[0] {
			t.Fatalf("remaining tokens after each hit %v (miss: %d), want each hit's reservation given back", lefts, first)
		}
	}
}

// A backend that answers 429 or 503 (busy) or refuses the request as
// invalid did no work, and the request used to keep its estimate: a
// client retrying a busy backend spent its budget on nothing. Now it is
// given back; a 500 (the backend may have worked) keeps it.
func TestBackendRefusalsChargeNoTokens(t *testing.T) {
	for _, tc := range []struct {
		status int
		given  bool
	}{{429, true}, {503, true}, {400, true}, {500, false}} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, `{"error":{"message":"Server busy, please try again later","type":"server_error","code":null}}`)
			}))
			defer be.Close()
			cfg := testConfig(be.URL)
			cfg.Retry.Attempts = 1
			cfg.Health.MaxFails = 0
			const limit = 1000
			url := tokenGateway(t, cfg, limit)
			body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":200}`
			_, first, b := remaining(t, url, body)
			_, second, b2 := remaining(t, url, body)
			if given := second == first; given != tc.given {
				t.Fatalf("backend %d: remaining %d then %d (%s / %s), want the first's tokens given back: %v", tc.status, first, second, b, b2, tc.given)
			}
		})
	}
}

// Coalesced followers got the answer of one backend call, the leader's,
// and used to keep their whole estimates: four identical requests cost
// the key one usage and three estimates. Now the leader is settled to its
// usage and each follower to nothing.
func TestCoalescedFollowersChargeNoTokens(t *testing.T) {
	release := make(chan struct{})
	be := heldUsageBackend(t, release)
	const limit = 100000
	lim := int64(limit)
	cfg := testConfig(be.URL)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &lim}
	clk := &frozenClock{now: time.Now()}
	url, gw := startCachingGatewayCfg(t, cfg, nil, clk.Now)
	openAtCleanup(t, release)
	body := fmt.Sprintf(detBody, `,"max_tokens":100`)
	const n = 4
	done := make(chan string, n)
	for range n {
		go func() {
			resp := post(t, url, body, "Authorization", "Bearer k")
			readAll(t, resp)
			done <- resp.Header.Get("X-Cache")
		}()
	}
	waitFlight(t, gw, n)
	close(release)
	for range n {
		<-done
	}
	probe := `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`
	_, left, _ := remaining(t, url, probe)
	probeEst := int(admission.EstimateCost(len(probe), 1, 256))
	if charged := limit - left - probeEst; charged != 7 {
		t.Fatalf("%d identical requests, one backend call (usage 7 tokens): charged %d", n, charged)
	}
}

// settledCharge is what the key was charged for stream once it settled,
// and its admission estimate: before is the tokens left right after the
// stream (its estimate taken); a probe request then reads what is left
// with the stream settled and the probe's own estimate taken.
func settledCharge(t *testing.T, url, stream string, before int) (charged, streamEst int) {
	t.Helper()
	probe := `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`
	_, after, _ := remaining(t, url, probe)
	probeEst := int(admission.EstimateCost(len(probe), 1, 256))
	streamEst = int(admission.EstimateCost(len(stream), 0, 256))
	return before + streamEst - after - probeEst, streamEst
}
