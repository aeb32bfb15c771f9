package cache

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// TTLFor returns how long an answer with status may be cached: ttl for 200,
// min(negativeTTL, ttl) for the deterministic client errors 400, 404 and
// 422, and 0 (do not cache) for anything else — never 408, 429 or 5xx,
// which depend on the moment rather than the request.
func TTLFor(status int, ttl, negativeTTL time.Duration) time.Duration {
	switch status {
	case 200:
		return ttl
	case 400, 404, 422:
		return min(negativeTTL, ttl)
	}
	return 0
}

// Tiered looks up L1 then L2 and promotes L2 hits to L1; Set writes both
// with a jittered TTL. Either level may be nil. Tiered is itself a Level.
type Tiered struct {
	l1, l2 Level
	// mem is l1 when it is the in-process level (nil otherwise): read
	// directly, not through the Level interface and Memory.Get's frame,
	// on every hit.
	mem     *Memory
	jitter  float64
	rand    func() float64
	metrics *Metrics
	bloom   *keyFilter // nil: every L1 miss asks L2
	// promoteTTL is the L1 life of an entry promoted from L2.
	promoteTTL time.Duration
}

// TieredOptions configure a Tiered cache.
type TieredOptions struct {
	L1, L2 Level
	// Jitter spreads TTLs by ±Jitter (a fraction; default 0.1) so entries
	// stored together do not expire together. Negative: no jitter.
	Jitter float64
	// Rand returns a uniform value in [0, 1); it is required when Jitter
	// is used (pass rand.Float64 from math/rand/v2 in production).
	Rand func() float64
	// BloomKeys > 0 enables a Bloom filter of keys this process stored in
	// L2, sized for that many keys per generation at BloomFPRate (default
	// 0.01): a key not in it skips the L2 round trip. Only keys written
	// through this Tiered are known, so enable it only where this process
	// is L2's writer (or where missing other replicas' entries until it
	// stores them itself is acceptable). Two generations rotate as keys
	// are added, so the filter stays accurate as old entries expire.
	BloomKeys   uint
	BloomFPRate float64
	// PromoteTTL is how long at most an L2 hit stays in L1, never longer
	// than the L2 entry has left; default 30s.
	PromoteTTL time.Duration
	Metrics    *Metrics
}

// NewTiered returns a Tiered cache.
func NewTiered(o TieredOptions) (*Tiered, error) {
	if o.Jitter == 0 {
		o.Jitter = 0.1
	}
	if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.Jitter >= 1 {
		return nil, errors.New("cache: jitter must be below 1")
	}
	if o.Jitter > 0 && o.Rand == nil {
		return nil, errors.New("cache: jitter needs a Rand source")
	}
	if o.PromoteTTL <= 0 {
		o.PromoteTTL = 30 * time.Second
	}
	t := &Tiered{l1: o.L1, l2: o.L2, jitter: o.Jitter, rand: o.Rand, metrics: o.Metrics, promoteTTL: o.PromoteTTL}
	t.mem, _ = o.L1.(*Memory)
	if o.BloomKeys > 0 && o.L2 != nil {
		fp := o.BloomFPRate
		if fp <= 0 || fp >= 1 {
			fp = 0.01
		}
		t.bloom = newKeyFilter(o.BloomKeys, fp)
	}
	return t, nil
}

// Get implements Level. L2 errors are counted and reported as a miss with
// the error (fail open: callers may ignore it).
func (t *Tiered) Get(ctx context.Context, key string) (*Entry, bool, error) {
	e, ok, err := t.get(ctx, key)
	t.metrics.answered(ok)
	return e, ok, err
}

func (t *Tiered) get(ctx context.Context, key string) (*Entry, bool, error) {
	if t.mem != nil {
		if it, ok := t.mem.c.GetIfPresent(key); ok {
			t.metrics.hitL1()
			return it.e, true, nil
		}
		t.metrics.lookup(LevelL1, "miss")
	} else if t.l1 != nil {
		if e, ok, _ := t.l1.Get(ctx, key); ok {
			t.metrics.hitL1()
			return e, true, nil
		}
		t.metrics.lookup(LevelL1, "miss")
	}
	if t.l2 == nil {
		return nil, false, nil
	}
	if t.bloom != nil && !t.bloom.test(key) {
		t.metrics.lookup(LevelL2, "skip")
		return nil, false, nil
	}
	e, ok, err := t.l2.Get(ctx, key)
	if err != nil {
		t.metrics.redisError("get")
		t.metrics.lookup(LevelL2, "miss")
		return nil, false, err
	}
	if !ok {
		t.metrics.lookup(LevelL2, "miss")
		return nil, false, nil
	}
	t.metrics.lookup(LevelL2, "hit")
	if t.l1 != nil {
		// The copy lives at most promoteTTL and never past the L2 entry:
		// a negative entry (negative_ttl) or one with a short rule TTL
		// must not be served longer from L1 than it was stored for.
		ttl := t.promoteTTL
		if e.left != 0 {
			ttl = min(ttl, e.left)
		}
		_ = t.l1.Set(ctx, key, e, ttl)
	}
	return e, true, nil
}

// FreshInL1 reports whether the in-process level holds key fresh at now,
// counting no lookup (the cache's metrics count clients' lookups). It is
// the gateway's check, before a background refresh, that another refresh
// has not just stored the key.
func (t *Tiered) FreshInL1(key string, now time.Time) bool {
	if t.l1 == nil {
		return false
	}
	e, ok, _ := t.l1.Get(context.Background(), key)
	return ok && !e.Stale(now)
}

// Set implements Level: it stores e in both levels for ttl ± jitter. An
// entry with a freshness (Fresh after Stored: stale-while-revalidate) has
// its freshness jittered instead, and is kept for the rest of ttl past it,
// the stale window, unjittered: entries stored together then turn stale
// (and are refreshed) at different times, and each keeps its whole stale
// window. An L2 error is counted and returned; L1 holds the entry
// regardless.
func (t *Tiered) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	if fresh := e.Fresh.Sub(e.Stored); !e.Fresh.IsZero() && !e.Stored.IsZero() && fresh > 0 && fresh <= ttl {
		jf := t.Jittered(fresh)
		c := *e
		c.Fresh = e.Stored.Add(jf)
		e, ttl = &c, ttl-fresh+jf
	} else {
		ttl = t.Jittered(ttl)
	}
	return t.SetJittered(ctx, key, e, ttl)
}

// SetJittered stores e in both levels for ttl as given: the caller
// jittered it, and e's freshness, already (Jittered). The gateway does so
// for an answer it relays: it chooses the freshness before the answer's
// head is written, so that the max-age the client is told is the one the
// entry is stored with.
func (t *Tiered) SetJittered(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	if t.l1 != nil {
		_ = t.l1.Set(ctx, key, e, ttl)
	}
	if t.l2 == nil {
		return nil
	}
	if t.bloom != nil {
		t.bloom.add(key) // before the write: a concurrent Get may then look
	}
	if err := t.l2.Set(ctx, key, e, ttl); err != nil {
		t.metrics.redisError("set")
		return err
	}
	return nil
}

// JitteredAtMost is the longest freshness Jittered can make of ttl.
func (t *Tiered) JitteredAtMost(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl) * (1 + t.jitter))
}

// Jittered returns ttl scaled by a random factor in [1-Jitter, 1+Jitter).
func (t *Tiered) Jittered(ttl time.Duration) time.Duration {
	if t.jitter == 0 || ttl <= 0 {
		return ttl
	}
	f := 1 + t.jitter*(2*t.rand()-1)
	return time.Duration(float64(ttl) * f)
}

// keyFilter is a two-generation Bloom filter, safe for concurrent use
// (bloom.BloomFilter is not). When the current generation has taken n keys
// it becomes the previous one and a fresh one starts.
type keyFilter struct {
	mu        sync.Mutex
	cur, prev *bloom.BloomFilter
	added, n  uint
	fp        float64
}

func newKeyFilter(n uint, fp float64) *keyFilter {
	return &keyFilter{cur: bloom.NewWithEstimates(n, fp), n: n, fp: fp}
}

func (f *keyFilter) add(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.added >= f.n {
		f.prev, f.cur, f.added = f.cur, bloom.NewWithEstimates(f.n, f.fp), 0
	}
	f.cur.AddString(key)
	f.added++
}

func (f *keyFilter) test(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur.TestString(key) || (f.prev != nil && f.prev.TestString(key))
}
