package gateway

import (
	"context"
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
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// flightStream is a deterministic stream without max_tokens: under a token
// limit it has a budget (streamBudget), and its identical copies coalesce.
const flightStream = `{"model":"m1","temperature":0,"messages":[{"role":"user","content":"a long story"}],"stream":true}`

// streamAnswer is what one client of a long stream got.
type streamAnswer struct {
	status       int
	tokens       int  // text events relayed
	cut, done    bool // ended by the in-band rate_limit_exceeded event; by [DONE]
	xcache, body string
}

func readStreamAnswer(t *testing.T, resp *http.Response) streamAnswer {
	t.Helper()
	b := readAll(t, resp)
	return streamAnswer{status: resp.StatusCode, tokens: strings.Count(b, `"content":"tok "`),
		cut: strings.Contains(b, `"code":"rate_limit_exceeded"`), done: strings.HasSuffix(b, "data: [DONE]\n\n"),
		xcache: resp.Header.Get("X-Cache"), body: b}
}

// waitWaiters waits until the gateway's flights have total waiters, in
// one flight or several.
func waitWaiters(t *testing.T, gw *Gateway, total int) {
	t.Helper()
	waitFlightWaiters(t, gw, strconv.Itoa(total)+" in all", func(got []int) bool {
		sum := 0
		for _, n := range got {
			sum += n
		}
		return sum == total
	})
}

// tokensLeft is what a probe sent with key sees left of its tightest token
// limit, its own reservation given back (it is charged its 1 + prompt).
func tokensLeft(t *testing.T, url, key string) int {
	t.Helper()
	const probe = `{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":1}`
	resp := post(t, url, probe, "Authorization", "Bearer "+key)
	readAll(t, resp)
	left, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("probe with %s: %d %v", key, resp.StatusCode, resp.Header)
	}
	return left + int(admission.EstimateCost(len(probe), 1, 256))
}

// twoKeyFlight sends flightStream with leader, then, once it is at the
// backend, with follower (identical: it would join the leader's flight),
// and lets the backend stream gen tokens to both. It returns what each got
// and the backend calls made.
func twoKeyFlight(t *testing.T, cfg *config.Config, gen int, leader, follower string) (lead, follow streamAnswer, calls int, url string, clk *frozenClock) {
	t.Helper()
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	openAtCleanup(t, release)
	be := longStreamBackend(t, gen, arrived, release)
	cfg.Models[0].Backends = []config.Backend{{URL: be.URL}}
	clk = &frozenClock{now: time.Now()}
	url, gw := startCachingGatewayCfg(t, cfg, nil, clk.Now)
	answers := [2]chan streamAnswer{make(chan streamAnswer, 1), make(chan streamAnswer, 1)}
	send := func(i int, key string) {
		go func() { answers[i] <- readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer "+key)) }()
	}
	send(0, leader)
	<-arrived
	calls = 1
	send(1, follower)
	waitWaiters(t, gw, 2) // joined the leader's flight, or leads its own
	close(release)
	lead, follow = <-answers[0], <-answers[1]
	for len(arrived) > 0 {
		<-arrived
		calls++
	}
	return lead, follow, calls, url, clk
}

// usedOf is what key has used of its limit tokens a minute, for a key
// that may have nothing left (a stream cut where its limit ran out):
// the probe is sent a tenth of a minute later, when a tenth of the limit
// has come back. It moves clk on: read other keys' use first.
func usedOf(t *testing.T, url, key string, limit int, clk *frozenClock) int {
	t.Helper()
	clk.Advance(6 * time.Second)
	return limit + limit/10 - tokensLeft(t, url, key)
}

// tokenGatewayClock is tokenGateway with its clock.
func tokenGatewayClock(t *testing.T, cfg *config.Config, limit int64) (string, *frozenClock) {
	t.Helper()
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &limit}
	clk := &frozenClock{now: time.Now()}
	url, _ := startCachingGatewayCfg(t, cfg, nil, clk.Now)
	return url, clk
}

// twoKeys is a tenant's two keys: k1 with a token limit of limit a minute,
// k2 (and any other key) with plenty.
func twoKeys(limit int64) *config.Config {
	cfg := testConfig("http://unused")
	cfg.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "t"}, {Key: "k2", Tenant: "t"}}
	plenty := int64(100000)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &plenty}
	cfg.RateLimits.Keys = map[string]config.RateRule{"k1": {TokensPerMinute: &limit}}
	return cfg
}

// A coalesced flight ran on its leader's budget, so when the leader's key
// ran out of tokens the stream was cut for every client of the flight:
// k1 (1,000 tokens a minute) led, k2 (100,000) followed, and k2 got k1's 512
// tokens and k1's rate_limit_exceeded, charged nothing, its own limit
// untouched. A budgeted stream now shares a flight only with requests
// taking from the same token limits (upstreamCall.flightKey): k2's answer
// is its own, whole and charged to k2; k1's is cut as before.
func TestOneKeysTokenLimitDoesNotCutAnothersCoalescedStream(t *testing.T) {
	const gen = 2000
	lead, follow, calls, url, clk := twoKeyFlight(t, twoKeys(1000), gen, "k1", "k2")
	used2 := 100000 - tokensLeft(t, url, "k2")
	used1 := usedOf(t, url, "k1", 1000, clk)
	t.Logf("k1: %d tokens, cut %v (%s), charged %d; k2: %d tokens, cut %v, [DONE] %v (%s), charged %d; %d backend calls",
		lead.tokens, lead.cut, lead.xcache, used1, follow.tokens, follow.cut, follow.done, follow.xcache, used2, calls)
	if lead.status != 200 || !lead.cut || lead.tokens == 0 || lead.tokens >= gen {
		t.Fatalf("k1 (1,000 a minute): %d, %d tokens, cut %v; want its stream cut", lead.status, lead.tokens, lead.cut)
	}
	if follow.status != 200 || follow.cut || !follow.done || follow.tokens != gen {
		t.Fatalf("k2 (100,000 a minute): %d, %d of %d tokens, cut %v, [DONE] %v; want its whole answer, k1's limit is not its own",
			follow.status, follow.tokens, gen, follow.cut, follow.done)
	}
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	if used2 != prompt+gen {
		t.Fatalf("k2 charged %d, want the %d it was sent + %d prompt", used2, gen, prompt)
	}
	if used1 != prompt+lead.tokens {
		t.Fatalf("k1 charged %d for the %d tokens relayed to it (+ %d prompt) on a limit of 1000", used1, lead.tokens, prompt)
	}
}

// The reverse order: k2 (plenty) led and k1 (1,000) followed. k1 used to
// get all 2,000 tokens charged nothing, past its own limit; now it leads
// its own flight and is cut by its own limit.
func TestAFollowerDoesNotEscapeItsTokenLimitThroughAnotherKeysFlight(t *testing.T) {
	const gen = 2000
	lead, follow, calls, url, clk := twoKeyFlight(t, twoKeys(1000), gen, "k2", "k1")
	used1 := usedOf(t, url, "k1", 1000, clk)
	t.Logf("k2: %d tokens, cut %v; k1: %d tokens, cut %v (%s), charged %d; %d backend calls", lead.tokens, lead.cut, follow.tokens, follow.cut, follow.xcache, used1, calls)
	if lead.cut || lead.tokens != gen || !lead.done {
		t.Fatalf("k2: %d of %d tokens, cut %v", lead.tokens, gen, lead.cut)
	}
	if follow.status != 200 || !follow.cut || follow.tokens >= gen {
		t.Fatalf("k1 (1,000 a minute): %d, %d of %d tokens, cut %v; want its own limit to cut it", follow.status, follow.tokens, gen, follow.cut)
	}
	if prompt := int(admission.EstimateCost(len(flightStream), 0, 0)); used1 != prompt+follow.tokens {
		t.Fatalf("k1 charged %d for the %d tokens relayed to it (+ %d prompt) on a limit of 1000", used1, follow.tokens, prompt)
	}
}

// Requests taking from the same token limits still share one backend
// call: the leader's cut is the one each would have had (they share the
// limits), and the follower is charged nothing, as for any coalesced
// answer: the key pays once for the one generation, what its leader was
// sent.
func TestSameKeyBudgetedStreamsStillCoalesce(t *testing.T) {
	const gen = 2000
	lead, follow, calls, url, clk := twoKeyFlight(t, twoKeys(1000), gen, "k1", "k1")
	if calls != 1 || follow.xcache != "COALESCED" {
		t.Fatalf("%d backend calls, follower X-Cache %q; want one shared call", calls, follow.xcache)
	}
	if !lead.cut || !follow.cut || lead.tokens != follow.tokens {
		t.Fatalf("leader %d tokens cut %v, follower %d cut %v; want both cut alike", lead.tokens, lead.cut, follow.tokens, follow.cut)
	}
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	if used := usedOf(t, url, "k1", 1000, clk); used != prompt+lead.tokens {
		t.Fatalf("k1 charged %d for one stream of %d tokens relayed twice (+ %d prompt)", used, lead.tokens, prompt)
	}
}

// A stream cut by its token budget was settled to every text event the
// relay had read, the rest of the cut block included: the gateway reads
// the backend ahead of the client by up to a read buffer (32 KiB, ~300 of
// these events), so on a limit of 1,000 a stream sent 768 tokens was
// charged 923 or 924 (+ 25 prompt: 130 tokens it never got, by how the
// backend's writes fell into reads), which put the key in debt. It is now
// charged what it was sent, within its grant.
func TestACutStreamIsChargedWhatItWasSent(t *testing.T) {
	const limit, gen = 1000, 2000
	be := longStreamBackend(t, gen, nil, nil)
	url, clk := tokenGatewayClock(t, testConfig(be.URL), limit)
	got := readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer k"))
	if got.status != 200 || !got.cut || got.tokens >= gen {
		t.Fatalf("%d, %d of %d tokens, cut %v; want a cut stream", got.status, got.tokens, gen, got.cut)
	}
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	if used := usedOf(t, url, "k", limit, clk); used != prompt+got.tokens {
		t.Fatalf("charged %d for the %d tokens sent (+ %d prompt)", used, got.tokens, prompt)
	}
}

// A stream retried before its first byte (its first backend answered
// 502) runs on the same budget as one that was not: the budget and the
// count start with the relayed answer, so it is cut where the other is
// and charged what it was sent. (Passes on the old code but for the
// charge, TestACutStreamIsChargedWhatItWasSent's defect.)
func TestARetriedStreamKeepsItsBudget(t *testing.T) {
	const limit, gen = 1000, 2000
	var failed atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		failed.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(bad.Close)
	good := longStreamBackend(t, gen, nil, nil)
	url, clk := tokenGatewayClock(t, testConfig(bad.URL, good.URL), limit)
	got := readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer k"))
	if failed.Load() != 1 {
		t.Fatalf("the failing backend was tried %d times, want 1 (first)", failed.Load())
	}
	prompt := int(admission.EstimateCost(len(flightStream), 0, 0))
	// Cut where the limit ran out, as a stream that was not retried.
	if used := usedOf(t, url, "k", limit, clk); got.status != 200 || !got.cut || got.tokens != limit-prompt || used != prompt+got.tokens {
		t.Fatalf("%d, %d of %d tokens, cut %v, charged %d; want cut at %d, charged what was sent + the prompt", got.status, got.tokens, gen, got.cut, used, limit-prompt)
	}
}

// A budget's steps were taken with its leader's request context: in a
// flight its followers outlive the leader's client, and once that client
// left, every step against Redis failed on the cancelled context, and a
// store failure grants (the end settles): the followers' stream ran on
// unbounded. k1 (1,000 a minute) twice, the leader gone before the first
// token: the follower got all 2,000 tokens. The steps are the stream's,
// taken whoever still reads it.
func TestABudgetOutlivesItsLeadersClient(t *testing.T) {
	const gen = 2000
	rd := redistest.Start(t)
	cfg := twoKeys(1000)
	cfg.RateLimits.Store = "redis"
	cfg.RateLimits.Redis.Addrs = []string{rd.Addr}
	cfg.RateLimits.Redis.Timeout = config.Duration(time.Minute) // not a slow-Redis test: no local fallback
	cfg.RateLimits.Redis.ConnectTimeout = config.Duration(time.Minute)
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	openAtCleanup(t, release)
	be := longStreamBackend(t, gen, arrived, release)
	cfg.Models[0].Backends = []config.Backend{{URL: be.URL}}
	clk := &frozenClock{now: time.Now()}
	url, gw := startCachingGatewayCfg(t, cfg, nil, clk.Now)

	got := leaderLeavesItsFlight(t, url, gw, arrived, release)
	if len(arrived) != 0 || got.xcache != "COALESCED" {
		t.Fatalf("follower X-Cache %q, %d more backend calls; want it coalesced", got.xcache, len(arrived))
	}
	t.Logf("follower: %d tokens, cut %v; k1 charged %d", got.tokens, got.cut, 1000-tokensLeft(t, url, "k1"))
	if got.status != 200 || !got.cut || got.tokens >= gen {
		t.Fatalf("follower of the same key: %d, %d of %d tokens, cut %v; want cut by k1's 1,000 a minute", got.status, got.tokens, gen, got.cut)
	}
}

// leaderLeavesItsFlight sends k1's stream, whose client leaves once a
// second k1 request has joined its flight as a follower, then lets the
// backend answer (release): the follower's answer.
func leaderLeavesItsFlight(t *testing.T, url string, gw *Gateway, arrived <-chan struct{}, release chan struct{}) streamAnswer {
	t.Helper()
	follower := make(chan streamAnswer, 1)
	leaderLeaves(t, url, gw, flightStream, arrived, release, func() {
		follower <- readStreamAnswer(t, post(t, url, flightStream, "Authorization", "Bearer k1"))
	})
	return <-follower
}

// leaderLeaves sends body as k1, starts follow (on a goroutine of its
// own) once the backend has the leader's request, and when follow's
// request has joined the flight, makes the leader's client leave; once
// the leader's request has left its flight, it lets the backend answer
// (release). The caller reads follow's outcome.
func leaderLeaves(t *testing.T, url string, gw *Gateway, body string, arrived <-chan struct{}, release chan struct{}, follow func()) {
	t.Helper()
	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k1")
	req.Header.Set("Content-Type", "application/json")
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-arrived
	go follow()
	waitWaiters(t, gw, 2)
	leave()
	<-leaderDone
	waitWaiters(t, gw, 1) // the leader's request has left its flight
	close(release)
}
