package gateway

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
)

// cacheAgeStep is one request of a cache-age test at a moment of the
// gateway's clock (since the first request) and what it must be told.
type cacheAgeStep struct {
	at          time.Duration
	key         string // "" = no Authorization
	xcache, age string // age "" = no Age header
	cc          string
}

// runCacheAgeSteps sends the steps in order to a caching gateway over an
// okBackend, on a clock the test moves, and checks X-Cache, Age and
// Cache-Control of each; it returns the backend calls made.
func runCacheAgeSteps(t *testing.T, cfg *config.Config, steps []cacheAgeStep) int32 {
	t.Helper()
	ok := newOKBackend(t)
	cfg.Models[0].Backends[0].URL = ok.URL
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := new(atomic.Int64)
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	url, _ := startCachingGatewayCfg(t, cfg, nil, now)
	for i, s := range steps {
		clock.Store(start.Add(s.at).UnixNano())
		var hdr []string
		if s.key != "" {
			hdr = []string{"Authorization", "Bearer " + s.key}
		}
		resp := post(t, url, fmt.Sprintf(detBody, ""), hdr...)
		body := readAll(t, resp)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("X-Cache") != s.xcache || h.Get("Age") != s.age || h.Get("Cache-Control") != s.cc {
			t.Errorf("step %d at %v (%s): %d X-Cache %q Age %q Cache-Control %q, want %s %q %q: %s", i, s.at, s.key,
				resp.StatusCode, h.Get("X-Cache"), h.Get("Age"), h.Get("Cache-Control"), s.xcache, s.age, s.cc, body)
		}
	}
	return ok.calls.Load()
}

// TestCacheHitMaxAgeStaysAsAgeGrows: a hit states the answer's freshness
// lifetime as max-age and its age as Age, so a client's remaining
// freshness is max-age - Age (RFC 9111 4.2). Before, a hit said max-age
// = TTL - age next to Age = age: the client counted the age twice (at
// 200 s of a 300 s TTL: max-age=100, Age: 200, stale to any client), and
// an entry the level still held past the TTL (jitter) was a HIT with
// max-age=0. Past the TTL it is now a miss, and the answer stored then
// starts a fresh TTL.
func TestCacheHitMaxAgeStaysAsAgeGrows(t *testing.T) {
	cfg := testConfig("http://unused")
	cfg.Cache.TTL = config.Duration(5 * time.Minute)
	calls := runCacheAgeSteps(t, cfg, []cacheAgeStep{
		{at: 0, xcache: "MISS", cc: "private, max-age=300"},
		{at: 200 * time.Second, xcache: "HIT", age: "200", cc: "private, max-age=300"},
		{at: 299 * time.Second, xcache: "HIT", age: "299", cc: "private, max-age=300"},
		{at: 301 * time.Second, xcache: "MISS", cc: "private, max-age=300"},
		{at: 311 * time.Second, xcache: "HIT", age: "10", cc: "private, max-age=300"},
	})
	if calls != 2 {
		t.Fatalf("backend calls %d, want 2", calls)
	}
}

// TestCacheHitNoOlderThanTheClientsRule: two keys of one tenant share an
// entry, their rules give 1m and 5m. An entry k2 stored is not served to
// k1 once older than k1's minute (before: a HIT at 120 s, max-age=0); k1's
// own call then replaces it, and k2's hits of that entry are told its
// minute (before: max-age=300, for an entry gone at 180 s: k2 got a MISS
// at 181 s that its max-age said it would not).
func TestCacheHitNoOlderThanTheClientsRule(t *testing.T) {
	cfg := testConfig("http://unused")
	cfg.Auth.Keys = []config.Tenant{{Key: "k1", Tenant: "t"}, {Key: "k2", Tenant: "t"}}
	cfg.Cache.Rules = []config.CacheRule{
		{Keys: []string{"k1"}, TTL: config.Duration(time.Minute)},
		{Keys: []string{"k2"}, TTL: config.Duration(5 * time.Minute)},
	}
	calls := runCacheAgeSteps(t, cfg, []cacheAgeStep{
		{at: 0, key: "k2", xcache: "MISS", cc: "private, max-age=300"},
		{at: 30 * time.Second, key: "k1", xcache: "HIT", age: "30", cc: "private, max-age=60"},
		{at: 120 * time.Second, key: "k2", xcache: "HIT", age: "120", cc: "private, max-age=300"},
		{at: 120 * time.Second, key: "k1", xcache: "MISS", cc: "private, max-age=60"},
		{at: 125 * time.Second, key: "k2", xcache: "HIT", age: "5", cc: "private, max-age=60"},
		{at: 181 * time.Second, key: "k2", xcache: "MISS", cc: "private, max-age=300"},
	})
	if calls != 3 {
		t.Fatalf("backend calls %d, want 3", calls)
	}
}

// TestCacheStaleAnswerSaysSo: with stale-while-revalidate, a stale answer
// carries the entry's max-age and an Age past it (a client sees it stale),
// a fresh hit the whole max-age (before: max-age = what was left, next to
// the Age).
func TestCacheStaleAnswerSaysSo(t *testing.T) {
	cfg := testConfig("http://unused")
	cfg.Cache.TTL = config.Duration(time.Minute)
	cfg.Cache.StaleWhileRevalidate = config.Duration(time.Hour)
	runCacheAgeSteps(t, cfg, []cacheAgeStep{
		{at: 0, xcache: "MISS", cc: "private, max-age=60"},
		{at: 30 * time.Second, xcache: "HIT", age: "30", cc: "private, max-age=60"},
		{at: 90 * time.Second, xcache: "STALE", age: "90", cc: "private, max-age=60"},
	})
}

// TestCacheMissToldTheJitteredFreshness: the TTL jitter (±10%) is chosen
// before a MISS's head is written, and the MISS is told the freshness the
// entry is stored with. Before, the MISS said max-age=100 (the rule) for
// an entry kept 90 s (the jitter at its lowest here): a HIT a second
// later said 90, and the client's copy outlived the gateway's by 10 s.
// Jittered upward the entry is kept 110 s, and clients are told the rule's
// 100, as a HIT of it tells them (freshness).
func TestCacheMissToldTheJitteredFreshness(t *testing.T) {
	for _, c := range []struct {
		draw   float64 // the level's random draw: factor 1 + 0.1*(2*draw-1)
		maxAge string
	}{{0, "private, max-age=90"}, {0.999999, "private, max-age=100"}} {
		ok := newOKBackend(t)
		cfg := testConfig(ok.URL)
		cfg.Cache.TTL = config.Duration(100 * time.Second)
		var clock atomic.Int64
		clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		mem, err := cache.NewMemory(1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(mem.Close)
		draw := c.draw
		tiered, err := cache.NewTiered(cache.TieredOptions{L1: mem, Jitter: 0.1, Rand: func() float64 { return draw }})
		if err != nil {
			t.Fatal(err)
		}
		srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Cache, d.Now = tiered, now })
		url := srv.URL + "/v1/chat/completions"
		ask := func() http.Header {
			resp := post(t, url, fmt.Sprintf(detBody, ""))
			readAll(t, resp)
			return resp.Header
		}
		miss := ask()
		clock.Add(int64(time.Second))
		hit := ask()
		if miss.Get("X-Cache") != "MISS" || hit.Get("X-Cache") != "HIT" {
			t.Fatalf("draw %v: X-Cache %q then %q, want MISS then HIT", draw, miss.Get("X-Cache"), hit.Get("X-Cache"))
		}
		if got := miss.Get("Cache-Control"); got != c.maxAge || hit.Get("Cache-Control") != c.maxAge {
			t.Errorf("draw %v: MISS told %q, the HIT a second later %q; want both %q", draw, got, hit.Get("Cache-Control"), c.maxAge)
		}
	}
}

// TestCacheJitteredPastTheRuleIsStaleNotAMiss: an entry whose freshness
// the jitter made longer than the rule (110 s for a 100 s TTL) is, between
// the two, past the client's TTL but fresh by its own: it was a MISS there
// (the backend asked again for an answer the cache held); with
// stale-while-revalidate it is a STALE answer from the cache, and no
// refresh is sent while the entry is fresh by its own freshness.
func TestCacheJitteredPastTheRuleIsStaleNotAMiss(t *testing.T) {
	ok := newOKBackend(t)
	cfg := testConfig(ok.URL)
	cfg.Cache.TTL = config.Duration(100 * time.Second)
	cfg.Cache.StaleWhileRevalidate = config.Duration(time.Minute)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	mem, err := cache.NewMemory(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	tiered, err := cache.NewTiered(cache.TieredOptions{L1: mem, Jitter: 0.1, Rand: func() float64 { return 0.999999 }})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Cache, d.Now = tiered, now })
	url := srv.URL + "/v1/chat/completions"
	ask := func() string {
		resp := post(t, url, fmt.Sprintf(detBody, ""))
		readAll(t, resp)
		return resp.Header.Get("X-Cache")
	}
	if x := ask(); x != "MISS" {
		t.Fatalf("first request: %q, want MISS", x)
	}
	clock.Add(int64(105 * time.Second)) // past the rule's 100 s, within the entry's 110 s
	for range 3 {
		if x := ask(); x != "STALE" {
			t.Fatalf("at 105 s of an entry jittered to 110 s: X-Cache %q, want STALE", x)
		}
	}
	if n := ok.calls.Load(); n != 1 {
		t.Fatalf("the backend was asked %d times, want once (the first MISS)", n)
	}
}
