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

// The requests waiting in the engine take the free cache first. Up to as
// many of them as this gateway has streams there still waiting for their
// first token are those, at their own sizes; the rest at the newcomer's.
// Half of 16,384 tokens used, 7,373 free less the reserve, five of ours
// there, three requests waiting. The code of branch kvexact counted all
// three at the newcomer's size: 31 short newcomers beside three of our
// 3,000-token prompts (which take more than the free cache), 4 long ones
// beside three of our 250-token prompts.
func TestReportedRoomCountsOurWaitingAtTheirSize(t *testing.T) {
	b, err := New(Spec{URL: "http://b"}, HealthPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	busy := Load{Running: 3, Waiting: 3, KVCacheUsage: 0.5, KVCacheTokens: 16384, InflightAtScrape: 5}
	with := func(streams, need int64) Load {
		l := busy
		l.WaitingAtScrape, l.WaitingKVAtScrape = streams, streams*need
		return l
	}
	cases := []struct {
		name string
		l    Load
		need float64
		room int
	}{
		{"ours long, the newcomer short", with(3, 3000), 250, 0},
		{"ours short, the newcomer long", with(3, 250), 3000, 7},
		// Four of ours without a first token, three waiting: three at
		// their mean, 2,250 each (one of them is prefilling).
		{"more of ours than wait", with(4, 2250), 250, 7},
		{"one of ours, two others'", with(1, 250), 3000, 5},
		{"none of ours", busy, 3000, 4},
		{"none of ours, short", busy, 250, 31},
	}
	for _, c := range cases {
		l := c.l
		l.At, l.Expires = at, at.Add(3*time.Second)
		b.SetLoad(Load{}) // no queue before
		b.SetLoad(l)
		room, ok := b.ReportedRoomFor(at, c.need)
		if !ok || room != c.room {
			t.Errorf("%s: room %d, ok %v; want %d", c.name, room, ok, c.room)
		}
	}
}
