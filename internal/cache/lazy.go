package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// LazyRedis is a Redis level whose client is made on first use, so a
// gateway starts (and serves, from L1 and upstream) while Redis is down.
// At most one dial runs at a time and failed dials are spaced by
// RedialEvery; meanwhile calls fail at once with ErrRedisUnavailable and
// the cache fails open. Once connected, rueidis reconnects by itself.
type LazyRedis struct {
	opt     rueidis.ClientOption
	ro      RedisOptions
	timeout time.Duration
	now     func() time.Time

	level atomic.Pointer[Redis]

	mu       sync.Mutex // held while dialing
	client   rueidis.Client
	lastDial time.Time
	closed   bool
}

// RedialEvery spaces dial attempts while Redis is unreachable.
const RedialEvery = time.Second

// ErrRedisUnavailable is returned while there is no Redis connection.
var ErrRedisUnavailable = errors.New("cache: redis unavailable")

// NewLazyRedis returns a level that connects with opt on first use. Each
// Get and Set is bounded by timeout (default 50ms): a slow Redis must cost
// a request little more than a miss. now may be nil (time.Now).
func NewLazyRedis(opt rueidis.ClientOption, ro RedisOptions, timeout time.Duration, now func() time.Time) *LazyRedis {
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	if now == nil {
		now = time.Now
	}
	return &LazyRedis{opt: opt, ro: ro, timeout: timeout, now: now}
}

func (l *LazyRedis) get() (*Redis, error) {
	if r := l.level.Load(); r != nil {
		return r, nil
	}
	if !l.mu.TryLock() {
		return nil, ErrRedisUnavailable // another caller is dialing
	}
	defer l.mu.Unlock()
	if r := l.level.Load(); r != nil {
		return r, nil
	}
	if l.closed {
		return nil, fmt.Errorf("%w: closed", ErrRedisUnavailable)
	}
	if now := l.now(); now.Sub(l.lastDial) < RedialEvery {
		return nil, ErrRedisUnavailable
	} else {
		l.lastDial = now
	}
	client, err := rueidis.NewClient(l.opt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrRedisUnavailable, l.opt.InitAddress, err)
	}
	l.client = client
	r := NewRedis(client, l.ro)
	l.level.Store(r)
	return r, nil
}

// Get implements Level.
func (l *LazyRedis) Get(ctx context.Context, key string) (*Entry, bool, error) {
	r, err := l.get()
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return r.Get(ctx, key)
}

// Set implements Level.
func (l *LazyRedis) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	r, err := l.get()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return r.Set(ctx, key, e, ttl)
}

// LocalHits is how many reads rueidis' client-side cache answered.
func (l *LazyRedis) LocalHits() int64 {
	if r := l.level.Load(); r != nil {
		return r.LocalHits()
	}
	return 0
}

// Close closes the client, if one was made; later calls fail.
func (l *LazyRedis) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.client != nil {
		l.client.Close()
	}
	l.level.Store(nil)
}
