package app

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// responseCache is the process's response cache: built once, it outlives
// config reloads (a reload may turn caching off or change rules and TTLs,
// not resize the levels or move Redis).
type responseCache struct {
	level   cache.Level
	metrics *cache.Metrics
	memo    *cache.Memo
	mem     *cache.Memory
	redis   *cache.LazyRedis // nil without cache.redis.addrs
}

// newResponseCache builds L1 always (so a reload can turn caching on) and
// L2 when Redis is configured. Redis is dialled on first use: the gateway
// starts while Redis is down and the cache fails open until it is back.
// L2 reads through rueidis' client-side cache (cached answers never change
// under a key, so invalidation messages are rare and reads of hot entries
// cost no round trip), on the client clients holds for that Redis: the
// rate limits and the Responses ids on the same Redis share it (nil: a
// client of its own). log gets the L2 bypass' lines (cache.LazyRedis).
func newResponseCache(c config.Cache, reg prometheus.Registerer, now func() time.Time, clients *redisconn.Clients, log *slog.Logger) (*responseCache, error) {
	m, err := cache.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	size := c.MaxBytes
	if size <= 0 {
		size = config.Default().Cache.MaxBytes
	}
	rc := &responseCache{metrics: m}
	if rc.mem, err = cache.NewMemory(uint64(size), m); err != nil {
		return nil, fmt.Errorf("cache.max_bytes: %w", err)
	}
	if rc.memo, err = cache.NewMemo(requestMemoBodies); err != nil {
		rc.Close()
		return nil, err
	}
	if reg != nil {
		registerMemoMetrics(reg, rc.memo)
	}
	opts := cache.TieredOptions{L1: rc.mem, Rand: rand.Float64, Metrics: m}
	if rd := c.Redis; len(rd.Addrs) > 0 {
		rc.redis = cache.NewLazyRedis(clients, redisconn.Option(rd.Redis), cache.RedisOptions{Prefix: rd.KeyPrefix, LocalTTL: rd.LocalTTL.D()},
			rd.Timeout.D(), now, log)
		opts.L2 = rc.redis
		opts.BloomKeys = rd.BloomKeys
		if reg != nil {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "sluice_cache_redis_local_hits_total",
				Help: "Redis cache reads answered by rueidis' client-side cache, without a round trip.",
			}, func() float64 { return float64(rc.redis.LocalHits()) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{
					Name: "sluice_cache_redis_degraded",
					Help: "1 while the Redis cache level is bypassed after a failure (unreachable, closed or slower than cache.redis.timeout): requests are answered from L1 and upstream without waiting for Redis; one call retries it after a back-off of 0.5s doubling to 10s.",
				}, func() float64 {
					if rc.redis.Degraded() {
						return 1
					}
					return 0
				}))
		}
	}
	if rc.level, err = cache.NewTiered(opts); err != nil {
		rc.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	return rc, nil
}

// requestMemoBodies bounds the request memo (cache.Memo): bodies of
// cacheable requests, each remembered with its peek and cache key
// (~200 B plus the peek's strings), so at most some tens of MB, plus its
// table of slots (8 B each, 800 KB, made at start).
const requestMemoBodies = 100_000

// registerMemoMetrics exposes the request memo's bound, fill and
// evictions, read at scrape time: nothing on the request path.
func registerMemoMetrics(reg prometheus.Registerer, memo *cache.Memo) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_request_memo_bodies",
			Help: "Request bodies the request memo keeps (their peek and cache key, so a repeated request is not parsed again).",
		}, func() float64 { return float64(memo.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_request_memo_capacity",
			Help: "The most request bodies the request memo keeps (its slots; a new body whose two slots are taken replaces one of them).",
		}, func() float64 { return float64(memo.Capacity()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_request_memo_evictions_total",
			Help: "Request memo entries dropped to make room for new bodies (a dropped body costs one parse when it comes back).",
		}, func() float64 { return float64(memo.Evictions()) }),
	)
}

// Close stops the levels' goroutines and connections.
func (rc *responseCache) Close() {
	if rc.mem != nil {
		rc.mem.Close()
	}
	if rc.redis != nil {
		rc.redis.Close()
	}
}
