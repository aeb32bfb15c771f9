package routing

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// staleAfter mirrors the scraper's default (3 x 1s).
const staleAfter = 3 * time.Second

// scraped stores a reading taken at at, as the scraper would: with the
// backend's current in-flight count.
func scraped(b *endpoint.Backend, running, waiting, kv float64, at time.Time) {
	b.SetLoad(endpoint.Load{
		Running: running, Waiting: waiting, KVCacheUsage: kv,
		At: at, Expires: at.Add(staleAfter), InflightAtScrape: b.Inflight(),
	})
}

// reading is a backend's scrape in a table; stale means taken long enough
// before t0 to have expired, never means no scrape at all.
type reading struct {
	running, waiting, kv float64
	stale, never         bool
}

func (r reading) apply(b *endpoint.Backend) {
	switch {
	case r.never:
	case r.stale:
		scraped(b, r.running, r.waiting, r.kv, t0.Add(-staleAfter))
	default:
		scraped(b, r.running, r.waiting, r.kv, t0.Add(-time.Second))
	}
}

// pickCounts runs picks without acquiring, so the state never changes.
func pickCounts(t *testing.T, p Picker, bs []*endpoint.Backend, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		seen[p.Pick(&Request{}, bs).Name()]++
	}
	return seen
}

func TestLeastLoad(t *testing.T) {
	tests := []struct {
		name     string
		readings []reading
		inflight []int
		maxConc  []int
		want     []string // acceptable picks; each must show up (random tie-break)
	}{
		{"lowest queue", []reading{{running: 8}, {running: 2, waiting: 1}, {running: 4}}, nil, nil, []string{"b"}},
		{"waiting counts like running", []reading{{running: 2, waiting: 3}, {running: 4}}, nil, nil, []string{"b"}},
		{"lowest KV", []reading{{running: 2, kv: 0.9}, {running: 2, kv: 0.3}}, nil, nil, []string{"b"}},
		// a: 4/16 = 0.25; b: 0.6^2 = 0.36. KV squared: moderate use is cheap...
		{"queue against moderate KV", []reading{{running: 4}, {kv: 0.6}}, nil, nil, []string{"a"}},
		// ...pressure near full is not: a: 8/16 = 0.5; b: 0.95^2 = 0.9025.
		{"queue against KV near full", []reading{{running: 8}, {kv: 0.95}}, nil, nil, []string{"a"}},
		{"idle pool shares ties", []reading{{}, {}, {}}, nil, nil, []string{"a", "b", "c"}},
		{"within the tie band", []reading{{kv: 0.2}, {kv: 0.1}, {running: 1}}, nil, nil, []string{"a", "b"}},      // 0.04, 0.01, 0.0625
		{"capacity from MaxConcurrency", []reading{{running: 6}, {running: 3}}, nil, []int{64, 8}, []string{"a"}}, // 6/64 < 3/8
		{"stale is saturated", []reading{{running: 40, kv: 0.99}, {stale: true}, {never: true}}, nil, nil, []string{"a"}},
		{"all stale: least outstanding", []reading{{stale: true}, {stale: true, running: 50}, {never: true}}, []int{3, 1, 2}, nil, []string{"b"}},
		{"all stale: ties shared", []reading{{never: true}, {stale: true}, {never: true}}, []int{1, 1, 4}, nil, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []*endpoint.Backend
			for i, r := range tt.readings {
				maxConc := 0
				if tt.maxConc != nil {
					maxConc = tt.maxConc[i]
				}
				b := mk(t, string(rune('a'+i)), 1, maxConc)
				r.apply(b)
				if tt.inflight != nil {
					acquireN(t, b, tt.inflight[i])
				}
				bs = append(bs, b)
			}
			seen := pickCounts(t, newPicker(t, "least_load", 3), bs, 300)
			for n := range seen {
				if !slices.Contains(tt.want, n) {
					t.Errorf("picked %s (%d times), want one of %v", n, seen[n], tt.want)
				}
			}
			for _, n := range tt.want {
				if seen[n] == 0 {
					t.Errorf("%s never picked; ties must be shared: %v", n, seen)
				}
			}
		})
	}
}

// TestLeastLoadWeight: without MaxConcurrency, capacity is 16 x weight.
func TestLeastLoadWeight(t *testing.T) {
	a, b := mk(t, "a", 4, 0), mk(t, "b", 1, 0)
	scraped(a, 12, 0, 0, t0) // 12/64
	scraped(b, 4, 0, 0, t0)  // 4/16
	if got := pickCounts(t, newPicker(t, "least_load", 1), []*endpoint.Backend{a, b}, 50); got["a"] != 50 {
		t.Errorf("picks %v, want all on the heavier backend", got)
	}
}

// TestLeastLoadExpiry: a reading is trusted until just before Expires.
func TestLeastLoadExpiry(t *testing.T) {
	a, b := mk(t, "a", 1, 0), mk(t, "b", 1, 0)
	scraped(a, 0, 0, 0, t0)  // idle, scraped at t0
	scraped(b, 10, 0, 0, t0) // busy, re-scraped below
	bs := []*endpoint.Backend{a, b}
	if got := (&leastLoad{rnd: NewRand(1), now: fixedClock(t0.Add(staleAfter - 1))}).Pick(&Request{}, bs); got != a {
		t.Errorf("before expiry picked %s, want the idle a", got.Name())
	}
	scraped(b, 10, 0, 0, t0.Add(time.Second))
	if got := (&leastLoad{rnd: NewRand(1), now: fixedClock(t0.Add(staleAfter))}).Pick(&Request{}, bs); got != b {
		t.Errorf("at a's expiry picked %s, want b: a's reading is stale, b's fresh", got.Name())
	}
}

// TestLeastLoadInflightDelta: requests sent since the scrape count at once,
// and requests finished since the scrape stop counting.
func TestLeastLoadInflightDelta(t *testing.T) {
	a, b := mk(t, "a", 1, 0), mk(t, "b", 1, 0)
	acquireN(t, a, 10)
	scraped(a, 10, 0, 0, t0) // the backend counted our 10
	scraped(b, 5, 0, 0, t0)
	for range 10 {
		a.Release(t0, outcome.Success, time.Millisecond, 0)
	}
	now := t0.Add(time.Millisecond)
	if s, _ := loadScore(a, now); s != 0 {
		t.Errorf("a's score after its 10 requests finished = %v, want 0", s)
	}
	acquireN(t, a, 7)
	if s, _ := loadScore(a, now); s != 7.0/16 {
		t.Errorf("a's score after 7 more sent = %v, want 7/16", s)
	}
	p := &leastLoad{rnd: NewRand(1), now: fixedClock(now)}
	if got := p.Pick(&Request{}, []*endpoint.Backend{a, b}); got != b {
		t.Errorf("picked %s, want b (5 queued against a's 7 sent since)", got.Name())
	}
}

// TestLeastLoadHerd: right after a scrape that shows a idle, a burst of
// picks with no new scrape must spread once a has caught up, because each
// pick raises a's score by itself. The control shows why: without the
// in-flight delta (picks not acquired) every pick lands on a.
func TestLeastLoadHerd(t *testing.T) {
	for _, acquire := range []bool{true, false} {
		bs := mkPool(t, "a", "b", "c")
		scraped(bs[0], 0, 0, 0, t0)
		scraped(bs[1], 4, 0, 0, t0)
		scraped(bs[2], 6, 0, 0, t0)
		p := newPicker(t, "least_load", 9)
		got := map[string]int{}
		for range 50 {
			b := Select(t0, p, &Request{}, bs, nil)
			got[b.Name()]++
			if acquire {
				b.Acquire()
			}
		}
		if !acquire {
			if got["a"] != 50 {
				t.Errorf("control: %v; without the delta a should take every pick", got)
			}
			continue
		}
		if got["a"] >= 30 || got["b"] == 0 || got["c"] == 0 {
			t.Errorf("burst of 50 split %v; want it spread over all three", got)
		}
		// Queues even out: a 0+x, b 4+y, c 6+z end within two of each other.
		qa, qb, qc := got["a"], 4+got["b"], 6+got["c"]
		if hi, lo := max(qa, qb, qc), min(qa, qb, qc); hi-lo > 2 {
			t.Errorf("queues a=%d b=%d c=%d after the burst, want within 2", qa, qb, qc)
		}
	}
}

// TestLeastLoadTieBreakUsesRand: ties are resolved by the injected Rand,
// one draw per pick, over the tied candidates in order.
func TestLeastLoadTieBreakUsesRand(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	for i, r := range []reading{{}, {running: 9}, {}, {}} {
		r.apply(bs[i])
	}
	for k, want := range []string{"a", "c", "d"} {
		p := &leastLoad{rnd: &scriptedRand{t: t, vals: []int{k}}, now: fixedClock(t0)}
		if got := p.Pick(&Request{}, bs); got.Name() != want {
			t.Errorf("draw %d picked %s, want %s", k, got.Name(), want)
		}
	}
	// A single best needs no draw (scriptedRand would fail the test).
	scraped(bs[0], 0, 0, 0, t0)
	scraped(bs[2], 3, 0, 0, t0)
	scraped(bs[3], 3, 0, 0, t0)
	p := &leastLoad{rnd: &scriptedRand{t: t}, now: fixedClock(t0)}
	if got := p.Pick(&Request{}, bs); got != bs[0] {
		t.Errorf("picked %s, want a", got.Name())
	}
}

func TestLeastLoadRegistered(t *testing.T) {
	p, err := New("least_load", NewRand(1), fixedClock(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*leastLoad); !ok {
		t.Fatalf("New(least_load) = %T", p)
	}
}

func TestLeastLoadDoesNotAllocate(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d", "e", "f", "g", "h")
	for i, b := range bs {
		scraped(b, float64(i%3), 0, 0.1*float64(i%4), t0)
	}
	p, req := newPicker(t, "least_load", 1), &Request{}
	if n := testing.AllocsPerRun(100, func() { p.Pick(req, bs) }); n != 0 {
		t.Errorf("Pick allocates %v times, want 0", n)
	}
}

// TestLeastLoadConcurrent: picks race scrapes and Acquire/Release; run
// with -race.
func TestLeastLoadConcurrent(t *testing.T) {
	bs := mkPool(t, "a", "b", "c")
	p := newPicker(t, "least_load", 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 500 {
			for _, b := range bs {
				scraped(b, float64(i%7), 0, math.Mod(float64(i)/100, 1), t0)
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 500 {
				if b := Select(t0, p, &Request{}, bs, nil); b.Acquire() {
					b.Release(t0, outcome.Success, time.Millisecond, 0)
				}
			}
		})
	}
	wg.Wait()
}
