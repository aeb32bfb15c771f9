package endpoint

import (
	"testing"
	"time"
)

// setOnlyReading gives b the reading l taken at at, fresh for 3 s, with no
// reading before it (none queued in an earlier one).
func setOnlyReading(b *Backend, l Load, at time.Time) {
	l.At, l.Expires = at, at.Add(3*time.Second)
	b.SetLoad(Load{})
	b.SetLoad(l)
}

// The room an engine reports is never more than its KV cache holds: the
// sequences the free cache holds (running × (1 − usage − 5%) / usage,
// less those waiting) beside this gateway's own. An engine with a full
// cache (95% or more) has no room whatever its batch bound says; below
// that the bound alone is its room (a cache not full says nothing of a
// newcomer's size: TestReportedRoomKVShortNewcomersBesideBound). An engine
// that reports no bound (vLLM) gets its KV room alone once enough
// sequences run to estimate their footprint. The code before kvhead read
// the bound only: 14 free of 16 at 96% KV, and nothing without a bound.
func TestReportedRoomKV(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	at := time.Unix(1000, 0)
	cases := []struct {
		name string
		l    Load
		room int
		ok   bool
	}{
		// 5 running, 3 of them this gateway's, bound 16: bound room 14.
		// A full cache leaves our 3.
		{"bound, cache full", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.96, InflightAtScrape: 3}, 3, true},
		{"bound, cache at the reserve", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.95, InflightAtScrape: 3}, 3, true},
		{"bound, cache full and a request waiting", Load{Running: 5, Waiting: 1, BatchBound: 16, KVCacheUsage: 0.99, InflightAtScrape: 3}, 2, true},
		// Below full, the bound: 5 × 0.45 / 0.5 = 4.5 sequences like the
		// running ones is no measure of a newcomer's.
		{"bound, cache nearly full", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.9, InflightAtScrape: 3}, 14, true},
		{"bound, cache half full", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.5, InflightAtScrape: 3}, 14, true},
		{"bound, cache nearly empty", Load{Running: 5, BatchBound: 16, KVCacheUsage: 0.1, InflightAtScrape: 3}, 14, true},
		{"bound, one running fills half", Load{Running: 1, BatchBound: 16, KVCacheUsage: 0.5}, 15, true},
		{"bound, one running fills it", Load{Running: 1, BatchBound: 16, KVCacheUsage: 1}, 0, true},
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
		setOnlyReading(b, c.l, at)
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

// Short newcomers beside a few long prompts (branch review17's harm): an
// engine of 16 slots runs two 6,500-token prompts of another tenant and one
// short request of this gateway's, its cache 79% used. Sequences like the
// running ones would not fit (3 × 0.16 / 0.79 = 0.6), but a newcomer's
// one-word request is no such sequence, and the engine starts it at once
// beside 13 free slots. The room is the bound's, 14; kvhead's KV room made
// it this gateway's one in the engine, and a newcomer's short requests
// were held (503 at 3.46 s in review17's run, base all served at once).
func TestReportedRoomKVShortNewcomersBesideBound(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
	at := time.Unix(1000, 0)
	b.SetLoad(Load{Running: 3, BatchBound: 16, KVCacheUsage: 0.79, InflightAtScrape: 1, At: at, Expires: at.Add(3 * time.Second)})
	if room, ok := b.ReportedRoom(at); !ok || room != 14 {
		t.Fatalf("room %d, ok %v; want 14: the bound less the others' two, not the KV estimate for sequences like theirs", room, ok)
	}
}

// A KV-only engine (no bound) that queues in two readings in a row is
// full: no room, but its slots are accounted for (ReportsRoom), so a pool
// counts what it runs for this gateway rather than dropping its ceiling.
func TestReportedRoomKVQueueInTwoReadings(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://b"}, HealthPolicy{})
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
