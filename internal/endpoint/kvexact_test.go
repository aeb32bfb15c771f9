package endpoint

import (
	"testing"
	"time"
)

// An engine that reports its KV cache's size (16,384 tokens here) gives
// the room for newcomers of a given need exactly: the free tokens, size ×
// (1 − usage − 5%), over the need, beside this gateway's requests there,
// less those waiting, at any usage, under a bound when one is reported.
// Without a size, or with no need given, the estimate from the running
// sequences stands. The code before kvexact had only that estimate: none
// more for short newcomers beside long prompts on vLLM (3 × 0.16 / 0.79),
// the bound's 14 for long ones on SGLang below 95%.
func TestReportedRoomForNewcomersSize(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	at := time.Unix(1000, 0)
	cases := []struct {
		name string
		l    Load
		need float64
		room int
		ok   bool
	}{
		// 2,621 free tokens: 10 of 250, none of 3,000; one of ours there.
		{"vLLM, short newcomers", Load{Running: 3, KVCacheUsage: 0.79, KVCacheTokens: 16384, InflightAtScrape: 1}, 250, 11, true},
		{"vLLM, long newcomers", Load{Running: 3, KVCacheUsage: 0.79, KVCacheTokens: 16384, InflightAtScrape: 1}, 3000, 1, true},
		{"vLLM, a waiting request takes one", Load{Running: 3, Waiting: 1, KVCacheUsage: 0.79, KVCacheTokens: 16384}, 250, 9, true},
		{"vLLM, no size: the running ones' estimate", Load{Running: 3, KVCacheUsage: 0.79, InflightAtScrape: 1}, 250, 1, true},
		{"vLLM, no need given: the running ones' estimate", Load{Running: 3, KVCacheUsage: 0.79, KVCacheTokens: 16384, InflightAtScrape: 1}, 0, 1, true},
		// Idle: the whole cache less the reserve, 15,564 tokens.
		{"vLLM, idle", Load{KVCacheTokens: 16384}, 1000, 15, true},
		{"vLLM, full", Load{Running: 8, KVCacheUsage: 0.99, KVCacheTokens: 16384, InflightAtScrape: 2}, 10, 2, true},
		{"vLLM, a tiny need", Load{Running: 3, KVCacheUsage: 0.5, KVCacheTokens: 1e12}, 1e-300, maxReportedBound, true},
		// SGLang: the bound (16, two others') caps the short ones.
		{"bound, short newcomers", Load{Running: 3, BatchBound: 16, KVCacheUsage: 0.79, KVCacheTokens: 16384, InflightAtScrape: 1}, 100, 14, true},
		{"bound, long newcomers", Load{Running: 3, BatchBound: 16, KVCacheUsage: 0.79, KVCacheTokens: 16384, InflightAtScrape: 1}, 3000, 1, true},
		{"bound, no size", Load{Running: 3, BatchBound: 16, KVCacheUsage: 0.79, InflightAtScrape: 1}, 3000, 14, true},
	}
	for _, c := range cases {
		setOnlyReading(b, c.l, at)
		room, ok := b.ReportedRoomFor(at, c.need)
		if ok != c.ok || (ok && room != c.room) {
			t.Errorf("%s: room %d, ok %v; want %d, %v", c.name, room, ok, c.room, c.ok)
		}
		if !b.ReportsRoom(at) {
			t.Errorf("%s: ReportsRoom false", c.name)
		}
	}
}
