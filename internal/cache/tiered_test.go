package cache

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

func entry(body string) *Entry {
	return &Entry{Status: 200, ContentType: "application/json", Body: []byte(body)}
}

func newRedisLevel(t *testing.T) (*Redis, *redistest.Server) {
	t.Helper()
	s := redistest.Start(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return NewRedis(c, RedisOptions{}), s
}

func TestTTLFor(t *testing.T) {
	for status, want := range map[int]time.Duration{
		200: time.Hour, 400: time.Minute, 404: time.Minute, 422: time.Minute,
		408: 0, 429: 0, 500: 0, 502: 0, 503: 0, 201: 0,
	} {
		if got := TTLFor(status, time.Hour, time.Minute); got != want {
			t.Errorf("%d: %v want %v", status, got, want)
		}
	}
	if got := TTLFor(404, time.Second, time.Minute); got != time.Second {
		t.Errorf("negative TTL must not exceed the TTL: %v", got)
	}
}

func TestJitter(t *testing.T) {
	r := 0.0
	tc, err := NewTiered(TieredOptions{Rand: func() float64 { return r }})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r    float64
		want time.Duration
	}{{0, 90 * time.Second}, {0.5, 100 * time.Second}, {0.75, 105 * time.Second}} {
		r = c.r
		if got := tc.Jittered(100 * time.Second); got != c.want {
			t.Errorf("r=%v: %v want %v", c.r, got, c.want)
		}
	}
	if _, err := NewTiered(TieredOptions{}); err == nil {
		t.Error("jitter without Rand must be refused")
	}
}

func TestMemoryBoundedInBytes(t *testing.T) {
	m, _ := NewMetrics(nil)
	mem, err := NewMemory(20_000, m)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	ctx := context.Background()
	big := string(make([]byte, 1000))
	for i := range 100 {
		_ = mem.Set(ctx, string(rune('a'+i%26))+string(rune(i)), entry(big), time.Hour)
	}
	mem.c.CleanUp()
	if got := mem.WeightedSize(); got > 20_000 {
		t.Fatalf("weighted size %d over bound", got)
	}
	if n := testutil.ToFloat64(m.evictions.WithLabelValues(LevelL1, "size")); n == 0 {
		t.Fatal("no evictions counted")
	}
	if b := testutil.ToFloat64(m.bytes.WithLabelValues(LevelL1)); b != float64(mem.WeightedSize()) {
		t.Fatalf("bytes gauge %v, weighted size %d", b, mem.WeightedSize())
	}
	if err := mem.Set(ctx, "huge", entry(string(make([]byte, 5000))), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := mem.Get(ctx, "huge"); ok {
		t.Fatal("an entry over a tenth of the bound was stored")
	}
}

func TestRedisLevel(t *testing.T) {
	l2, _ := newRedisLevel(t)
	ctx := context.Background()
	if _, ok, err := l2.Get(ctx, "k"); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	stream := &Entry{Status: 200, ContentType: "text/event-stream", Stored: time.Unix(100, 0), Events: [][]byte{[]byte(`{"a":1}`)}}
	if err := l2.Set(ctx, "k", stream, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The miss above is cached client-side too; Redis' invalidation for
	// our own SET arrives just after the SET reply.
	got := eventually(t, l2, "k", func(e *Entry) bool { return e.IsStream() })
	ok, err := true, error(nil)
	if !ok || err != nil || !got.IsStream() || string(got.Events[0]) != `{"a":1}` || !got.Stored.Equal(stream.Stored) {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
	if _, _, err := l2.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if l2.LocalHits() == 0 {
		t.Fatal("second read not served by the client-side cache")
	}
	// Overwriting invalidates the client-side copy (server-assisted).
	if err := l2.Set(ctx, "k", entry(`{"v":2}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, l2, "k", func(e *Entry) bool { return string(e.Body) == `{"v":2}` })
}

// eventually reads key until cond holds (no sleeps; the bound, generous for
// a loaded machine, only turns a hang into a failure).
func eventually(t *testing.T, l *Redis, key string, cond func(*Entry) bool) *Entry {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, ok, err := l.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if ok && cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale client-side value: %+v", got)
		}
	}
}

func TestTieredPromoteBloomFailOpen(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	l1, _ := NewMemory(1<<20, m)
	defer l1.Close()
	l2, srv := newRedisLevel(t)
	tc, err := NewTiered(TieredOptions{L1: l1, L2: l2, Rand: func() float64 { return 0.5 }, BloomKeys: 1000, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Never-stored key: the Bloom filter skips L2.
	if _, ok, err := tc.Get(ctx, "nope"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if n := testutil.ToFloat64(m.lookups.WithLabelValues(LevelL2, "skip")); n != 1 {
		t.Fatalf("l2 skips %v", n)
	}

	if err := tc.Set(ctx, "k", entry(`{"x":1}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := tc.Get(ctx, "k"); !ok {
		t.Fatal("miss after set")
	}
	if n := testutil.ToFloat64(m.lookups.WithLabelValues(LevelL1, "hit")); n != 1 {
		t.Fatalf("l1 hits %v", n)
	}
	// Gone from L1 only: served by L2, then promoted.
	l1.c.Invalidate("k")
	if e, ok, err := tc.Get(ctx, "k"); !ok || err != nil || string(e.Body) != `{"x":1}` {
		t.Fatal("l2 miss", ok, err)
	}
	if _, ok, _ := l1.Get(ctx, "k"); !ok {
		t.Fatal("l2 hit not promoted to l1")
	}

	// Redis down: fail open with a counted error. Use a key never read
	// through L2: "k" may still sit in rueidis' client-side cache until the
	// client notices the connection is gone, and may then be served from it.
	if err := tc.Set(ctx, "cold", entry(`{"y":2}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	l1.c.Invalidate("cold")
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, ok, err := tc.Get(cctx, "cold")
	if ok || err == nil {
		t.Fatalf("redis down: ok=%v err=%v", ok, err)
	}
	if n := testutil.ToFloat64(m.redisErrs.WithLabelValues("get")); n != 1 {
		t.Fatalf("redis errors %v", n)
	}
	if err := tc.Set(cctx, "k2", entry(`{}`), time.Minute); err == nil {
		t.Fatal("set to a dead redis reported no error")
	}
	if _, ok, _ := tc.Get(ctx, "k2"); !ok {
		t.Fatal("L1 must keep the entry when L2 fails")
	}
	// /status's totals count each Get once, by its final answer: hits from
	// L1 ("k", "k2") and L2 ("k" again), misses skipped ("nope") or failed
	// ("cold").
	if got := m.Counts(); got != (Counts{Hits: 3, Misses: 2}) {
		t.Fatalf("Counts = %+v, want 3 hits, 2 misses", got)
	}
}

func TestKeyFilterRotates(t *testing.T) {
	f := newKeyFilter(10, 0.01)
	for i := range 15 {
		f.add(string(rune('A' + i)))
	}
	for i := range 15 {
		if !f.test(string(rune('A' + i))) {
			t.Fatalf("key %d forgotten after one rotation", i)
		}
	}
}

// An entry read from Redis is copied into L1 for no longer than Redis
// still holds it: a negative entry stored for 3s and read back from
// another replica's Redis must not be served from L1 for PromoteTTL
// (30s by default). Both the client-side-caching client and one without
// it (a Redis without RESP3) are checked.
func TestPromotedEntryDoesNotOutliveRedis(t *testing.T) {
	for _, disable := range []bool{false, true} {
		s := redistest.Start(t)
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, DisableCache: disable})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		l2 := NewRedis(c, RedisOptions{})
		ctx := context.Background()
		neg := &Entry{Status: 404, ContentType: "application/json", Body: []byte(`{"error":{}}`)}
		if err := l2.Set(ctx, "neg", neg, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		l1, _ := NewMemory(1<<20, nil)
		defer l1.Close()
		tc, err := NewTiered(TieredOptions{L1: l1, L2: l2, Jitter: -1})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := tc.Get(ctx, "neg"); !ok || err != nil {
			t.Fatalf("disable=%v: L2 miss: %v", disable, err)
		}
		ttl, ok := l1.c.GetEntry("neg")
		if !ok {
			t.Fatalf("disable=%v: not promoted", disable)
		}
		if left := ttl.ExpiresAfter(); left > 3*time.Second || left <= 0 {
			t.Fatalf("disable=%v: L1 copy lives %v, the Redis entry 3s", disable, left)
		}
	}
}

// An entry with a stale window (Fresh set) keeps the whole window after
// its jittered freshness: before, the stored life (freshness + window)
// was jittered as a whole, so with a window under a tenth of the TTL an
// entry jittered down expired while still fresh and was never served
// stale (TTL 100s, window 5s, jitter -10%: stored 94.5s, fresh 100s).
func TestJitterKeepsTheStaleWindow(t *testing.T) {
	l1, _ := NewMemory(1<<20, nil)
	defer l1.Close()
	tc, err := NewTiered(TieredOptions{L1: l1, Rand: func() float64 { return 0 }}) // -10%
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := &Entry{Status: 200, ContentType: "application/json", Body: []byte(`{}`), Stored: now, Fresh: now.Add(100 * time.Second)}
	if err := tc.Set(context.Background(), "k", e, 105*time.Second); err != nil {
		t.Fatal(err)
	}
	got, ok := l1.c.GetEntry("k")
	if !ok {
		t.Fatal("not stored")
	}
	fresh := got.Value.e.Fresh.Sub(now)
	if fresh != 90*time.Second {
		t.Fatalf("fresh for %v, want 90s (jittered -10%%)", fresh)
	}
	if life := got.ExpiresAfter(); life < 94*time.Second || life > 95*time.Second {
		t.Fatalf("stored for %v, want the jittered freshness 90s + the 5s window", life)
	}
	if e.Fresh.Sub(now) != 100*time.Second {
		t.Fatal("the caller's entry was modified")
	}
}
