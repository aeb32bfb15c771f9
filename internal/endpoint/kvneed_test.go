package endpoint

import (
	"testing"
	"time"
)

// A need the whole cache of an idle engine would not hold (above 95% of
// 16,384 tokens here) is not judged by the cache's size: no room would
// ever come for it, and the engine is the judge (vLLM refuses a prompt
// beyond max_model_len at once; a high estimate, long words read as
// bytes / 4, it runs). The estimate from the running sequences, or the
// bound, stands for it. The code of branch kvexact gave such a need no
// room beyond this gateway's requests there, at any usage: the ramp held
// it to its deadline.
func TestReportedRoomForNeedBeyondTheCache(t *testing.T) {
	b, err := New(Spec{URL: "http://b"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	cases := []struct {
		name string
		l    Load
		need float64
		room int
		ok   bool
	}{
		// 3 x 0.75 / 0.2: 11 more like the running ones, one of ours there.
		{"vLLM: the running ones' estimate", Load{Running: 3, KVCacheUsage: 0.2, KVCacheTokens: 16384, InflightAtScrape: 1}, 16000, 12, true},
		{"vLLM idle: nothing to estimate from", Load{KVCacheTokens: 16384}, 16000, 0, false},
		{"bound: the bound's room", Load{Running: 3, BatchBound: 16, KVCacheUsage: 0.2, KVCacheTokens: 16384, InflightAtScrape: 1}, 16000, 14, true},
		// 15,564 tokens (95%) fit an idle engine: judged by the size.
		{"vLLM idle, the most that fits", Load{KVCacheTokens: 16384}, 15564, 1, true},
		{"vLLM busy, the most that fits", Load{Running: 3, KVCacheUsage: 0.2, KVCacheTokens: 16384, InflightAtScrape: 1}, 15564, 1, true},
	}
	for _, c := range cases {
		l := c.l
		l.At, l.Expires = at, at.Add(3*time.Second)
		b.SetLoad(Load{}) // no queue before
		b.SetLoad(l)
		room, ok := b.ReportedRoomFor(at, c.need)
		if ok != c.ok || (ok && room != c.room) {
			t.Errorf("%s: room %d, ok %v; want %d, %v", c.name, room, ok, c.room, c.ok)
		}
	}
}
