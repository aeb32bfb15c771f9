package routing

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// keyOf is a spread of non-zero keys, as openai.PrefixKey would give.
func keyOf(i int) uint64 { return fnv64(fmt.Sprint("prompt-", i)) | 1 }

func TestPrefixAffinitySameKeySameBackend(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	p := newPicker(t, "prefix_affinity", 1)
	seen := map[string]bool{}
	for k := range 200 {
		req := &Request{PrefixKey: keyOf(k)}
		first := p.Pick(req, bs)
		for range 5 {
			if got := p.Pick(req, bs); got != first {
				t.Fatalf("key %d: picked %s then %s with equal loads", k, first.Name(), got.Name())
			}
		}
		seen[first.Name()] = true
	}
	if len(seen) != len(bs) {
		t.Fatalf("200 keys reached only %v", seen)
	}
	// A fresh picker (another replica, a restart) maps keys the same way.
	q := newPicker(t, "prefix_affinity", 99)
	for k := range 200 {
		req := &Request{PrefixKey: keyOf(k)}
		if p.Pick(req, bs) != q.Pick(req, bs) {
			t.Fatalf("key %d maps differently in another picker", k)
		}
	}
}

// TestPrefixAffinityBoundedLoads: every request has the same key and stays
// outstanding; no backend may go above (1+eps) x the mean + 1.
func TestPrefixAffinityBoundedLoads(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var names []string
			for i := range n {
				names = append(names, fmt.Sprint("b", i))
			}
			bs := mkPool(t, names...)
			p := newPicker(t, "prefix_affinity", 1)
			req := &Request{PrefixKey: keyOf(7)}
			home := p.Pick(req, bs)
			for total := 1; total <= 200; total++ {
				b := p.Pick(req, bs)
				acquireN(t, b, 1)
				mean := float64(total) / float64(n)
				for _, x := range bs {
					if float64(x.Inflight()) > (1+defaultBalance)*mean+1 {
						t.Fatalf("after %d requests %s holds %d (mean %.1f)", total, x.Name(), x.Inflight(), mean)
					}
				}
			}
			// The key's home backend is the fullest: affinity held as far as the bound let it.
			for _, x := range bs {
				if x.Inflight() > home.Inflight() {
					t.Fatalf("%s holds %d, more than the key's home %s (%d)", x.Name(), x.Inflight(), home.Name(), home.Inflight())
				}
			}
		})
	}
}

// TestPrefixAffinityWeighted: a weight-3 backend takes three times the share
// of the keys and of the bounded load.
func TestPrefixAffinityWeighted(t *testing.T) {
	bs := []*endpoint.Backend{mk(t, "a", 3, 0), mk(t, "b", 1, 0)}
	p := newPicker(t, "prefix_affinity", 1)
	count := map[string]int{}
	for k := range 4000 {
		count[p.Pick(&Request{PrefixKey: keyOf(k)}, bs).Name()]++
	}
	if share := float64(count["a"]) / 4000; share < 0.65 || share > 0.85 {
		t.Fatalf("weight-3 backend got %.2f of keys, want about 0.75", share)
	}
	// One hot key: each backend stays within (1+eps) x its weighted share.
	for _, k := range []int{1, 2, 3, 4} {
		a, b := mk(t, "a", 3, 0), mk(t, "b", 1, 0)
		req := &Request{PrefixKey: keyOf(k)}
		for total := 1; total <= 100; total++ {
			acquireN(t, p.Pick(req, []*endpoint.Backend{a, b}), 1)
			if lim := (1+defaultBalance)*0.75*float64(total) + 1; float64(a.Inflight()) > lim {
				t.Fatalf("key %d: a holds %d of %d", k, a.Inflight(), total)
			}
			if lim := (1+defaultBalance)*0.25*float64(total) + 1; float64(b.Inflight()) > lim {
				t.Fatalf("key %d: b holds %d of %d", k, b.Inflight(), total)
			}
		}
	}
}

// TestPrefixAffinityConsistent: removing one backend of five moves only the
// keys it owned.
func TestPrefixAffinityConsistent(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d", "e")
	p := newPicker(t, "prefix_affinity", 1)
	const keys = 2000
	before := make([]*endpoint.Backend, keys)
	for k := range keys {
		before[k] = p.Pick(&Request{PrefixKey: keyOf(k)}, bs)
	}
	removed := bs[2]
	rest := []*endpoint.Backend{bs[0], bs[1], bs[3], bs[4]}
	kept := 0
	for k := range keys {
		after := p.Pick(&Request{PrefixKey: keyOf(k)}, rest)
		switch {
		case before[k] == removed:
		case after != before[k]:
			t.Fatalf("key %d moved from %s to %s though its backend stayed", k, before[k].Name(), after.Name())
		default:
			kept++
		}
	}
	if frac := float64(kept) / keys; frac < 0.7 {
		t.Fatalf("only %.2f of keys kept their backend", frac)
	}
	// And back: the full set maps as it did.
	for k := range keys {
		if p.Pick(&Request{PrefixKey: keyOf(k)}, bs) != before[k] {
			t.Fatalf("key %d maps differently after the backend returned", k)
		}
	}
}

func TestPrefixAffinityNoKeyFallsBack(t *testing.T) {
	bs := mkPool(t, "a", "b", "c")
	acquireN(t, bs[0], 3)
	acquireN(t, bs[2], 1)
	p := newPicker(t, "prefix_affinity", 1)
	for range 50 {
		if got := p.Pick(&Request{}, bs); got != bs[1] {
			t.Fatalf("no key: picked %s, want the least loaded b", got.Name())
		}
	}
}

// TestPrefixAffinityScrapedLoad: a backend whose scraped queue (other
// clients' requests) is above the bound is skipped like a busy one.
func TestPrefixAffinityScrapedLoad(t *testing.T) {
	bs := mkPool(t, "a", "b", "c")
	p := newPicker(t, "prefix_affinity", 1)
	req := &Request{PrefixKey: keyOf(3)}
	home := p.Pick(req, bs)
	scraped(home, 8, 4, 0.5, t0.Add(-time.Second))
	if got := p.Pick(req, bs); got == home {
		t.Fatalf("picked %s with a scraped queue of 12 and idle peers", got.Name())
	}
	// A stale reading is ignored.
	scraped(home, 8, 4, 0.5, t0.Add(-time.Minute))
	if got := p.Pick(req, bs); got != home {
		t.Fatalf("stale reading moved the key to %s", got.Name())
	}
}

// TestPrefixAffinityLeastLoad: prefix_affinity+least_load walks the same
// ring but bounds by least_load's score: a home within scoreBand of the
// lowest score keeps its key where prefix_affinity's ratio bound spills it,
// a home further above spills even where that bound would keep it, KV
// pressure counts, and requests without a key go to least_load.
func TestPrefixAffinityLeastLoad(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	plain := newPicker(t, "prefix_affinity", 1)
	p := newPicker(t, "prefix_affinity+least_load", 1)
	req := &Request{PrefixKey: keyOf(3)}
	home := p.Pick(req, bs)
	if plain.Pick(req, bs) != home {
		t.Fatal("the two policies place a key differently")
	}
	set := func(queues map[*endpoint.Backend]float64, kv float64) {
		for _, b := range bs {
			k := 0.0
			if b == home {
				k = kv
			}
			scraped(b, queues[b], 0, k, t0.Add(-time.Second))
		}
	}
	others := slices.DeleteFunc(slices.Clone(bs), func(b *endpoint.Backend) bool { return b == home })

	// Few outstanding: home 2, one other 1. The ratio bound is
	// ceil(1.25 x 4/4) = 2, so prefix_affinity spills; the score gap is
	// 2/16, within the band.
	set(map[*endpoint.Backend]float64{home: 2, others[0]: 1}, 0)
	if got := plain.Pick(req, bs); got == home {
		t.Fatalf("prefix_affinity kept the key on %s at its bound", home.Name())
	}
	if got := p.Pick(req, bs); got != home {
		t.Fatalf("prefix_affinity+least_load moved the key to %s within the band", got.Name())
	}
	// Many outstanding: home 12, others 12, 12, 2. The ratio bound is
	// ceil(1.25 x 39/4) = 13, so prefix_affinity stays; the gap is 10/16.
	set(map[*endpoint.Backend]float64{home: 12, others[0]: 12, others[1]: 12, others[2]: 2}, 0)
	if got := plain.Pick(req, bs); got != home {
		t.Fatalf("prefix_affinity moved the key to %s under its bound", got.Name())
	}
	if got := p.Pick(req, bs); got == home {
		t.Fatalf("prefix_affinity+least_load kept the key on %s 10 requests above the least loaded", home.Name())
	}
	// KV pressure alone: equal queues, home's KV cache 90% full (0.81).
	set(map[*endpoint.Backend]float64{home: 1, others[0]: 1, others[1]: 1, others[2]: 1}, 0.9)
	if got := plain.Pick(req, bs); got != home {
		t.Fatalf("prefix_affinity moved the key to %s over KV pressure", got.Name())
	}
	if got := p.Pick(req, bs); got == home {
		t.Fatalf("prefix_affinity+least_load kept the key on %s with its KV cache 90%% full", home.Name())
	}
	// Without a key: least_load's lowest score.
	set(map[*endpoint.Backend]float64{home: 1, others[0]: 1, others[1]: 6, others[2]: 0}, 0)
	for range 20 {
		if got := p.Pick(&Request{}, bs); got != others[2] {
			t.Fatalf("no key: picked %s, want the idle %s", got.Name(), others[2].Name())
		}
	}
	// No fresh scrape anywhere: outstanding requests per slot, same band.
	q := newPicker(t, "prefix_affinity+least_load", 1)
	fresh := mkPool(t, "a", "b", "c", "d")
	h := q.Pick(req, fresh)
	acquireN(t, h, 4) // 4/16 above the others: within the band
	if got := q.Pick(req, fresh); got != h {
		t.Fatalf("without scrapes: moved the key to %s within the band", got.Name())
	}
	acquireN(t, h, 1)
	if got := q.Pick(req, fresh); got == h {
		t.Fatalf("without scrapes: kept the key on %s past the band", h.Name())
	}
}

func TestUsesPrefixKeyAndLoadMetrics(t *testing.T) {
	for _, n := range PolicyNames() {
		key := n == "prefix_affinity" || n == "prefix_affinity+least_load"
		if UsesPrefixKey(n) != key {
			t.Errorf("UsesPrefixKey(%q) = %v", n, !key)
		}
		if UsesLoadMetrics(n) != (key || n == "least_load") {
			t.Errorf("UsesLoadMetrics(%q) = %v", n, UsesLoadMetrics(n))
		}
	}
}

func TestPrefixAffinityPickAllocs(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d")
	for _, name := range []string{"prefix_affinity", "prefix_affinity+least_load"} {
		p := newPicker(t, name, 1)
		req := &Request{PrefixKey: keyOf(1)}
		p.Pick(req, bs) // builds the ring
		if a := testing.AllocsPerRun(100, func() { p.Pick(req, bs) }); a != 0 {
			t.Fatalf("%s: Pick allocates %.0f times per call after warm-up", name, a)
		}
	}
	// prefix_affinity+least_load walking past a home out of its band, too.
	p := newPicker(t, "prefix_affinity+least_load", 1)
	req := &Request{PrefixKey: keyOf(1)}
	home := p.Pick(req, bs)
	acquireN(t, home, 5) // 5/16 above the others
	if p.Pick(req, bs) == home {
		t.Fatal("the home kept its key past the band")
	}
	if a := testing.AllocsPerRun(100, func() { p.Pick(req, bs) }); a != 0 {
		t.Fatalf("spilling Pick allocates %.0f times per call", a)
	}
}

// TestRingBalance: with 100 points per backend each one's share of the
// ring is close to 1/n.
func TestRingBalance(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d", "e")
	r := newHashRing(bs)
	share := make([]float64, len(bs))
	for i := range r.points {
		prev := r.points[(i+len(r.points)-1)%len(r.points)]
		share[r.owner[i]] += float64(r.points[i]-prev) / math.MaxUint64 // arc ending at point i
	}
	for i, s := range share {
		if s < 0.12 || s > 0.28 {
			t.Errorf("%s owns %.3f of the ring, want about 0.2", bs[i].Name(), s)
		}
	}
}

func BenchmarkPrefixAffinityPick(b *testing.B) {
	bs := mkPool(b, "a", "b", "c", "d", "e", "f", "g", "h")
	p := newPicker(b, "prefix_affinity", 1)
	keys := make([]uint64, 1024)
	for i := range keys {
		keys[i] = keyOf(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Pick(&Request{PrefixKey: keys[i&1023]}, bs)
	}
}

// Rings are counted where they are built: once per candidate set first
// seen, not per request; past maxRings sets the cache starts over, once.
func TestPrefixAffinityRingBuildsCounted(t *testing.T) {
	bs := mkPool(t, "a", "b", "c", "d", "e", "f", "g")
	p := newPicker(t, "prefix_affinity", 1)
	var stats RingStats
	CountRings(p, &stats)
	req := &Request{PrefixKey: keyOf(1)}
	sets := 0
	for mask := 3; sets < maxRings+1; mask++ { // subsets of two or more, in order
		var c []*endpoint.Backend
		for i, b := range bs {
			if mask&(1<<i) != 0 {
				c = append(c, b)
			}
		}
		if len(c) < 2 {
			continue
		}
		sets++
		for range 3 {
			p.Pick(req, c)
		}
	}
	if b, r := stats.Built(), stats.Resets(); b != maxRings+1 || r != 1 {
		t.Fatalf("built %d, resets %d; want %d built (one per set), 1 reset", b, r, maxRings+1)
	}
	CountRings(newPicker(t, "least_conn", 1), &stats) // builds no rings; a no-op
}
