package gateway

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
)

// TestStaleWhileRevalidateFreshnessJittered: answers stored together
// with stale-while-revalidate on must not all turn stale together, or
// each of their keys sends its refresh upstream at the same moment (the
// avalanche the TTL jitter is there against). 40 keys stored at one
// instant, looked up at exactly the TTL: before, every one was STALE
// (freshness was the TTL unjittered; only the stored life, TTL + window,
// was jittered); now their freshness is spread ±10% and about half are
// still fresh.
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
	clock.Add(int64(100*time.Second) + 1) // just past the TTL
	stale := 0
	for i := range keys {
		if lookup(i) == "STALE" {
			stale++
		}
	}
	if stale == 0 || stale == keys {
		t.Fatalf("%d of %d keys stored together turned stale together at the TTL, want a spread", stale, keys)
	}
	t.Logf("%d of %d stale at the TTL", stale, keys)
}
