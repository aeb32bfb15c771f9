package cache

import (
	"context"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// LazyRedis is a Redis level whose client is made on first use
// (redisconn.Lazy), so a gateway starts (and serves, from L1 and upstream)
// while Redis is down. Failed dials are spaced by RedialEvery; meanwhile
// calls fail at once with redisconn.ErrUnavailable and the cache fails
// open. Once connected, rueidis reconnects by itself.
type LazyRedis struct {
	conn    *redisconn.Lazy[Redis]
	timeout time.Duration
}

// RedialEvery spaces dial attempts while Redis is unreachable.
const RedialEvery = time.Second

// NewLazyRedis returns a level that connects with opt on first use, on the
// client clients holds for that Redis (shared with the process's other
// users of it; nil: a client of its own). Each Get and Set is bounded by
// timeout (default 50ms): a slow Redis must cost a request little more
// than a miss. now may be nil (time.Now).
func NewLazyRedis(clients *redisconn.Clients, opt rueidis.ClientOption, ro RedisOptions, timeout time.Duration, now func() time.Time) *LazyRedis {
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	build := func(c rueidis.Client) *Redis { return NewRedis(c, ro) }
	return &LazyRedis{conn: redisconn.NewSharedLazy(clients, opt, build, RedialEvery, now), timeout: timeout}
}

// Get implements Level.
func (l *LazyRedis) Get(ctx context.Context, key string) (*Entry, bool, error) {
	r, err := l.conn.Get()
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return r.Get(ctx, key)
}

// Set implements Level.
func (l *LazyRedis) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	r, err := l.conn.Get()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return r.Set(ctx, key, e, ttl)
}

// LocalHits is how many reads rueidis' client-side cache answered.
func (l *LazyRedis) LocalHits() int64 {
	if r := l.conn.Loaded(); r != nil {
		return r.LocalHits()
	}
	return 0
}

// Close closes the client, if one was made; later calls fail.
func (l *LazyRedis) Close() { l.conn.Close() }
