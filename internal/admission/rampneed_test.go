package admission

import (
	"testing"
	"time"
)

// The ramp reckons the engines' reported room for each request's own KV
// need (branch kvexact), and looks at every parked waiter at each grant
// and release (unparkFreed). A thousand of B's requests held, of a
// thousand prompt lengths (100 to 1,099 tokens), were a thousand calls of
// ReportedCapacity, every backend's reading, per look, under the queue's
// lock: 400 µs a look against 73 µs for one need. Needs rounded up to 8
// steps per doubling (kvNeedSteps) are 28 calls a look.
func TestRampParkedNeedsLookedAtInFewCalls(t *testing.T) {
	calls := 0
	clk := newFakeClock()
	cfg := QueueConfig{Fair: true, RampWindow: 2 * time.Second, ReportedCapacity: func(float64) (int, bool) { calls++; return 0, false }}
	q := NewQueue(cfg, newCapacity(8).get, clk.Now)
	twoTenants(t, q, clk, true)
	for i := range 1000 {
		r := Request{Tenant: "B", Cost: 100 + float64(i), Streams: true, Deadline: clk.Now().Add(2 * time.Minute)}
		if _, _, err := q.submit(r); err != nil {
			t.Fatal(err)
		}
	}
	if held := q.Stats().RampHeld; held != 1005 {
		t.Fatalf("%d held; want B's 1,005", held)
	}
	calls = 0
	q.Kick()
	if calls > 40 {
		t.Fatalf("%d calls of ReportedCapacity for one look at 1,005 held waiters; want at most 40 (8 steps per doubling of their needs)", calls)
	}
}

// A request's KV need is its KVNeed when set (the answer clipped), never
// more than its cost, rounded up within one step of 2^(1/8).
func TestRequestKVNeed(t *testing.T) {
	cases := []struct {
		r        Request
		min, max float64
	}{
		{Request{Cost: 32800, KVNeed: 4128}, 4128, 4128 * 1.091},
		{Request{Cost: 300}, 300, 300 * 1.091},
		{Request{Cost: 300, KVNeed: 9000}, 300, 300 * 1.091},
		{Request{Cost: 0.5}, 1, 1},
		{Request{Cost: MaxCost}, MaxCost, MaxCost},
	}
	for _, c := range cases {
		if got := c.r.kvNeed(); got < c.min || got > c.max {
			t.Errorf("%+v: need %v; want %v to %v", c.r, got, c.min, c.max)
		}
	}
}

// The KV need clips each choice's answer at KVAnswerClip; the prompt and a
// short answer count whole, as in the cost.
func TestEstimateKVNeedClipsTheAnswer(t *testing.T) {
	cases := []struct {
		bytes, maxTokens, def, choices int
		want                           float64
	}{
		{400, 32768, 256, 1, 100 + 4096},
		{400, 32768, 256, 2, 100 + 2*4096},
		{400, 100, 256, 1, 200},
		{400, 0, 256, 1, 356},
		{400, 0, 100000, 1, 100 + 4096},
		{0, 0, 0, 0, 1},
	}
	for _, c := range cases {
		if got := EstimateKVNeed(c.bytes, c.maxTokens, c.def, c.choices); got != c.want {
			t.Errorf("EstimateKVNeed(%d, %d, %d, %d) = %v; want %v", c.bytes, c.maxTokens, c.def, c.choices, got, c.want)
		}
	}
}
