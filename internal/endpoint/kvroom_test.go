package endpoint

import (
	"testing"
	"time"
)

// The room an engine reports is never more than its KV cache holds: the
// sequences the free cache holds (running × (1 − usage − 5%) / usage,
// less those waiting) beside this gateway's own. An engine with a full
// cache has no room whatever its batch bound says, and an engine that
// reports no bound (vLLM) gets its KV room alone once enough sequences run
// to estimate their footprint. The old code read the bound only: 14 free
// of 16 at 90% KV, and nothing without a bound.
func TestReportedRoomKV(t *testing.T) {
	b, err := New(Spec{URL: "http://b"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	cases := []struct {
		name string
		l    Load
		room int
		ok   bool
	}{
		// 5 running, 3 of them this gateway's, bound 16: bound room 14.
		{"bound, cache nearly full", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.9, InflightAtScrape: 3}, 3, true},
		// 5 × 0.45 / 0.5 = 4.5: four more sequences fit, beside our 3.
		{"bound, cache half full", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.5, InflightAtScrape: 3}, 7, true},
		{"bound, cache nearly empty", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.1, InflightAtScrape: 3}, 14, true},
		{"bound, one running fills half", Load{Running: 1, BatchBound: 16, KVCacheUsage: 0.5}, 0, true},
		{"bound, no usage reported", Load{Running: 5, BatchBound: 16, InflightAtScrape: 3}, 14, true},
		// vLLM: no bound. 4 × 0.75 / 0.2 = 15.
		{"no bound, four running", Load{Running: 4, KVCacheUsage: 0.2}, 15, true},
		{"no bound, a waiting request takes one", Load{Running: 4, Waiting: 1, KVCacheUsage: 0.2}, 14, true},
		{"no bound, full", Load{Running: 8, KVCacheUsage: 0.99, InflightAtScrape: 2}, 2, true},
		{"no bound, one running", Load{Running: 1, KVCacheUsage: 0.1}, 0, false},
		{"no bound, idle", Load{KVCacheUsage: 0.001}, 0, false},
		{"no bound, no usage reported", Load{Running: 4}, 0, false},
		// This gateway's requests still in transit (sent, not yet in the
		// engine) take no KV yet: only what the engine holds is ours.
		{"no bound, ours in transit", Load{Running: 4, KVCacheUsage: 0.2, InflightAtScrape: 6}, 19, true},
		{"no bound, a huge estimate", Load{Running: 4, KVCacheUsage: 1e-300}, maxReportedBound, true},
	}
	for _, c := range cases {
		l := c.l
		l.At, l.Expires = at, at.Add(3*time.Second)
		b.SetLoad(Load{}) // no queue before
		b.SetLoad(l)
		room, ok := b.ReportedRoom(at)
		if ok != c.ok || (ok && room != c.room) {
			t.Errorf("%s: room %d, ok %v; want %d, %v", c.name, room, ok, c.room, c.ok)
		}
		if got := b.ReportsRoom(at); got != c.ok {
			t.Errorf("%s: ReportsRoom %v, want %v", c.name, got, c.ok)
		}
		if _, ok := b.ReportedRoom(at.Add(3 * time.Second)); ok {
			t.Errorf("%s: a stale reading gives room", c.name)
		}
	}
}

// A KV-only engine (no bound) that queues in two readings in a row is
// full: no room, but its slots are accounted for (ReportsRoom), so a pool
// counts what it runs for this gateway rather than dropping its ceiling.
func TestReportedRoomKVQueueInTwoReadings(t *testing.T) {
	b, err := New(Spec{URL: "http://b"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	for i := range 2 {
		now := at.Add(time.Duration(i) * time.Second)
		b.SetLoad(Load{Running: 6, Waiting: 2, KVCacheUsage: 0.3, At: now, Expires: now.Add(3 * time.Second)})
	}
	now := at.Add(time.Second)
	if room, ok := b.ReportedRoom(now); ok {
		t.Errorf("queued in two readings: room %d; want none", room)
	}
	if !b.ReportsRoom(now) {
		t.Error("queued in two readings: ReportsRoom false; want its slots accounted for (full)")
	}
}
