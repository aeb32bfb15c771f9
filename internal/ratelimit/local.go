package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

const (
	localShards = 64
	// DefaultMaxKeys bounds a LocalStore's buckets when the caller gives no
	// bound: about 100k keys, a few MB. The config owns the number
	// (rate_limits.max_keys), so docs/CONFIG.md prints the one in force.
	DefaultMaxKeys = config.DefaultRateLimitMaxKeys
	// evictSample is how many buckets an insertion into a full shard looks
	// at (Redis-style sampled eviction: O(1) work instead of a scan).
	evictSample = 16
)

// LocalStore keeps buckets in this process: sharded maps, one mutex per
// shard, no goroutine. It is the default store and the fail-open fallback of
// FailoverStore.
//
// The number of buckets is bounded. An idle bucket (its tat in the past) is
// the same as no bucket, so dropping one loses nothing; when a full shard
// needs room, an insertion samples a few buckets, drops every idle one among
// them, and if none is idle drops the one closest to idle — the only case
// where a bound can let a key through early, and only under a flood of more
// distinct keys than MaxKeys. Those drops are counted (Evicted).
type LocalStore struct {
	seed     maphash.Seed
	perShard int
	// evicted counts buckets dropped for room while still charged; only
	// a full shard's insertion touches it.
	evicted atomic.Uint64
	shards  [localShards]localShard
}

type localShard struct {
	mu  sync.Mutex
	tat map[string]float64
	_   [40]byte // keep shards on separate cache lines
}

// NewLocalStore returns a store holding at most maxKeys buckets
// (DefaultMaxKeys if maxKeys <= 0).
func NewLocalStore(maxKeys int) *LocalStore {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	s := &LocalStore{seed: maphash.MakeSeed(), perShard: max(1, (maxKeys+localShards-1)/localShards)}
	for i := range s.shards {
		s.shards[i].tat = make(map[string]float64)
	}
	return s
}

// Take implements Store.
func (s *LocalStore) Take(_ context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return s.apply(Op{Key: key, Limit: l, Cost: cost}, micros(now))
}

// Charge implements Store.
func (s *LocalStore) Charge(_ context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return s.apply(Op{Key: key, Limit: l, Cost: cost, Force: true}, micros(now))
}

// Apply implements Store. It never fails on a valid operation.
func (s *LocalStore) Apply(_ context.Context, ops []Op, now time.Time) ([]Decision, error) {
	n := micros(now)
	out := make([]Decision, len(ops))
	for i, op := range ops {
		d, err := s.apply(op, n)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// Cap is the most buckets the store holds: MaxKeys rounded up to a whole
// number per shard.
func (s *LocalStore) Cap() int { return s.perShard * localShards }

// Evicted is how many buckets were dropped for room while still charged:
// each may have let its key through early once.
func (s *LocalStore) Evicted() uint64 { return s.evicted.Load() }

// Len is the number of buckets held (for tests and metrics).
func (s *LocalStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.tat)
		sh.mu.Unlock()
	}
	return n
}

func (s *LocalStore) apply(op Op, now float64) (Decision, error) {
	if err := checkOp(op); err != nil {
		return Decision{}, err
	}
	p := paramsOf(op.Limit)
	sh := &s.shards[maphash.String(s.seed, op.Key)%localShards]
	sh.mu.Lock()
	tat, has := sh.tat[op.Key]
	newTat, store, o := gcra(tat, has, now, p, op.Cost, op.Force)
	if store {
		switch {
		case newTat <= now:
			delete(sh.tat, op.Key)
		case has:
			sh.tat[op.Key] = newTat
		default:
			if len(sh.tat) >= s.perShard && !sh.evict(now) {
				s.evicted.Add(1)
			}
			sh.tat[op.Key] = newTat
		}
	}
	sh.mu.Unlock()
	return o.decision(op.Limit), nil
}

// evict makes room for one bucket; sh.mu is held. Map iteration order is
// random, which makes the first evictSample entries a random sample. It
// reports whether the room came from idle buckets only (nothing lost).
func (sh *localShard) evict(now float64) (idle bool) {
	var victim string
	victimTat, seen, freed, found := 0.0, 0, false, false
	for k, tat := range sh.tat {
		if tat <= now {
			delete(sh.tat, k)
			freed = true
		} else if !found || tat < victimTat {
			victim, victimTat, found = k, tat, true
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	if !freed && found {
		delete(sh.tat, victim)
		return false
	}
	return true
}
