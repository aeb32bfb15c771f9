package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
)

// Level is one cache level. Get reports a miss as (nil, false, nil); an
// error also means a miss (levels fail open). Set with ttl <= 0 stores
// nothing. Entries handed to Set or returned by Get must not be modified.
type Level interface {
	Get(ctx context.Context, key string) (*Entry, bool, error)
	Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error
}

// Memory is the in-process level: an otter W-TinyLFU cache bounded in
// bytes (each entry weighs its Size) with a TTL per entry.
type Memory struct {
	c        *otter.Cache[string, memItem]
	maxEntry int
	m        *Metrics
}

type memItem struct {
	e   *Entry
	ttl time.Duration
}

// NewMemory returns a Memory holding at most maxBytes of entries (entries
// larger than a tenth of it are not stored: one answer must not flush the
// cache). m may be nil.
func NewMemory(maxBytes uint64, m *Metrics) (*Memory, error) {
	if maxBytes == 0 {
		return nil, errors.New("cache: memory level needs maxBytes > 0")
	}
	c, err := otter.New(&otter.Options[string, memItem]{
		MaximumWeight: maxBytes,
		Weigher: func(key string, it memItem) uint32 {
			return uint32(min(weight(key, it.e), math.MaxUint32))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, memItem]) time.Duration {
			return e.Value.ttl
		}),
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, memItem]) {
			m.addBytes(LevelL1, -weight(ev.Key, ev.Value.e))
			switch ev.Cause {
			case otter.CauseOverflow:
				m.evict(LevelL1, "size")
			case otter.CauseExpiration:
				m.evict(LevelL1, "expired")
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: memory level: %w", err)
	}
	mem := &Memory{c: c}
	mem.maxEntry = int(min(maxBytes/10, math.MaxUint32))
	mem.m = m
	return mem, nil
}

// nodeOverhead is what an entry costs the in-process level beyond the
// Entry's own Size: otter's node and its hash table's slot, and the
// Entry struct past entryOverhead (measured: 200,000 entries of a 300-byte
// answer held 107, 21 and 45 bytes each of these, by a heap profile).
const nodeOverhead = 176

// weight is what an entry under key costs the in-process level: its
// answer, its key (a scope and a digest, ~70 bytes) and the level's own
// bookkeeping. Counting only the answer let 200,000 small answers hold
// ~1.8 times cache.max_bytes' worth of heap (docs/RELIABILITY.md, "State
// keyed by client-chosen values at 200,000 distinct values").
func weight(key string, e *Entry) int { return e.Size() + len(key) + nodeOverhead }

// Get implements Level.
func (l *Memory) Get(_ context.Context, key string) (*Entry, bool, error) {
	it, ok := l.c.GetIfPresent(key)
	if !ok {
		return nil, false, nil
	}
	return it.e, true, nil
}

// Set implements Level.
func (l *Memory) Set(_ context.Context, key string, e *Entry, ttl time.Duration) error {
	if ttl <= 0 || e.Size() > l.maxEntry {
		return nil
	}
	l.m.addBytes(LevelL1, weight(key, e))
	l.c.Set(key, memItem{e: e, ttl: ttl})
	return nil
}

// WeightedSize is the bytes the level holds now.
func (l *Memory) WeightedSize() uint64 { return l.c.WeightedSize() }

// Close stops the cache's background goroutines.
func (l *Memory) Close() { l.c.StopAllGoroutines() }

// Redis is the shared level: entries as Redis strings under Prefix+key,
// read with rueidis client-side caching so hot entries come from the
// client's memory and Redis invalidates them when they change. The client
// must not have DisableCache set (and needs Redis 6+, RESP3) for that;
// with it set, reads still work, each one a round trip. Its other users
// pay nothing for it (redisconn.Option: tracking is OPTIN).
type Redis struct {
	client   rueidis.Client
	prefix   string
	localTTL time.Duration
	local    atomic.Int64 // reads answered from the client-side cache
}

// RedisOptions configure a Redis level.
type RedisOptions struct {
	// Prefix is prepended to every key; default "sluice:cache:".
	Prefix string
	// LocalTTL caps how long a value stays in the client-side cache
	// (Redis' own TTL caps it too); default 30s.
	LocalTTL time.Duration
}

// NewRedis returns a Redis level using client, which the caller owns.
func NewRedis(client rueidis.Client, o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = config.DefaultCacheRedisPrefix
	}
	if o.LocalTTL <= 0 {
		o.LocalTTL = config.DefaultCacheRedisLocalTTL
	}
	return &Redis{client: client, prefix: o.Prefix, localTTL: o.LocalTTL}
}

// Get implements Level.
func (l *Redis) Get(ctx context.Context, key string) (*Entry, bool, error) {
	cmd := l.client.B().Get().Key(l.prefix + key).Cache()
	res := l.client.DoCache(ctx, cmd, l.localTTL)
	if res.IsCacheHit() {
		l.local.Add(1)
	}
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cache: redis get: %w", err)
	}
	e, err := unmarshalEntry(b)
	if err != nil {
		return nil, false, fmt.Errorf("cache: redis get %s: %w", key, &decodeError{err})
	}
	// What Redis still holds it for: rueidis reads the PTTL with the value
	// when it caches client-side (capped by localTTL, which is no longer
	// than the copy is good for); a client without client-side caching
	// asks.
	ms := res.CachePTTL()
	if ms < 0 {
		ms, err = l.client.Do(ctx, l.client.B().Pttl().Key(l.prefix+key).Build()).AsInt64()
		if err != nil {
			ms = 0
		}
	}
	e.left = -1 // gone meanwhile, or unknown: not promoted
	if ms > 0 {
		e.left = time.Duration(ms) * time.Millisecond
	}
	return e, true, nil
}

// LocalHits is how many reads the client-side cache answered without a
// round trip to Redis.
func (l *Redis) LocalHits() int64 { return l.local.Load() }

// Set implements Level.
func (l *Redis) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	if ttl <= 0 {
		return nil
	}
	ms := max(ttl.Milliseconds(), 1)
	cmd := l.client.B().Set().Key(l.prefix + key).Value(rueidis.BinaryString(marshalEntry(e))).PxMilliseconds(ms).Build()
	if err := l.client.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("cache: redis set: %w", err)
	}
	return nil
}
