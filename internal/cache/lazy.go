package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// LazyRedis is a Redis level whose client is made on first use
// (redisconn.Lazy), so a gateway starts (and serves, from L1 and upstream)
// while Redis is down. Failed dials are spaced by RedialEvery; meanwhile
// calls fail at once with redisconn.ErrUnavailable and the cache fails
// open. Once connected, rueidis reconnects by itself.
//
// BypassAfter calls in a row that fail for Redis' sake (unreachable,
// closed, slower than the timeout; not an error Redis answered, such as
// OOM) put the level in a bypass (redisconn.Bypass; one slow call on a
// busy machine does not): its calls fail at once with ErrBypassed, so a request pays
// nothing for a Redis that is down or hung, where it paid the timeout on
// every Get and Set (and rueidis retried a read against a refused
// connection until the timeout). After a back-off (RedisBackoff, doubling
// on each failed retry up to RedisMaxBackoff) one call at a time tries
// Redis again; the first that succeeds ends the bypass. One line is logged
// when a bypass starts and one when it ends, never one per request; a
// bypass that starts within LogEvery of a logged one is logged only if
// its first retry fails too (bypasses that end at once, such as a Cluster
// with one master down flapping, are counted in the next line logged).
// The sluice_cache_redis_degraded gauge (Degraded) is exact.
type LazyRedis struct {
	conn    *redisconn.Lazy[Redis]
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
	bypass  *redisconn.NodeBypass

	mu       sync.Mutex
	badLog   time.Time // when a value that is not an entry was last logged
	badUnlog int       // such values read since, not logged
}

// RedialEvery spaces dial attempts while Redis is unreachable.
const RedialEvery = time.Second

// BypassAfter is how many calls in a row must fail for Redis' sake
// before the level bypasses it.
const BypassAfter = 3

// The bypass' back-off after a failure, doubled on each failed retry up to
// RedisMaxBackoff (the rate limits' store uses the same).
const (
	RedisBackoff    = redisconn.DefaultBypassBackoff
	RedisMaxBackoff = redisconn.DefaultBypassMaxBackoff
)

// LogEvery spaces the bypass' log lines (LazyRedis).
const LogEvery = time.Minute

// ErrBypassed is returned (wrapped) while the level bypasses a Redis that
// failed, before its next retry.
var ErrBypassed = errors.New("cache: redis level bypassed after a failure")

// NewLazyRedis returns a level that connects with opt on first use, on the
// client clients holds for that Redis (shared with the process's other
// users of it; nil: a client of its own). Each Get and Set is bounded by
// timeout (default 50ms): a slow Redis must cost a request little more
// than a miss. now may be nil (time.Now); log nil is slog.Default().
func NewLazyRedis(clients *redisconn.Clients, opt rueidis.ClientOption, ro RedisOptions, timeout time.Duration, now func() time.Time, log *slog.Logger) *LazyRedis {
	if timeout <= 0 {
		timeout = config.DefaultCacheRedisTimeout
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	build := func(c rueidis.Client) *Redis { return NewRedis(c, ro) }
	return &LazyRedis{conn: redisconn.NewSharedLazy(clients, opt, build, RedialEvery, now), timeout: timeout, now: now, log: log,
		bypass: redisconn.NewNodeBypass(redisconn.BypassOptions{Threshold: BypassAfter, Backoff: RedisBackoff, MaxBackoff: RedisMaxBackoff,
			LogEvery: LogEvery, Logger: log,
			DownMsg: "cache: redis level unavailable; bypassing it (L1 and upstream answer) until it recovers",
			UpMsg:   "cache: redis level recovered"}, nil)}
}

// Get implements Level.
func (l *LazyRedis) Get(ctx context.Context, key string) (*Entry, bool, error) {
	call, err := l.admit(key)
	if err != nil {
		return nil, false, err
	}
	r, err := l.conn.Get()
	if err != nil {
		l.done(ctx, call, err)
		return nil, false, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	e, ok, err := r.Get(cctx, key)
	l.done(ctx, call, err)
	l.corrupt(err)
	return e, ok, err
}

// corrupt logs a value read from Redis that is not an entry (written by
// something else under the prefix, or damaged): one line per LogEvery,
// with the count of those not logged. The read is a miss and the answer's
// fill overwrites the value.
func (l *LazyRedis) corrupt(err error) {
	var de *decodeError
	if !errors.As(err, &de) {
		return
	}
	l.mu.Lock()
	now := l.now()
	if !l.badLog.IsZero() && now.Sub(l.badLog) < LogEvery {
		l.badUnlog++
		l.mu.Unlock()
		return
	}
	unlogged := l.badUnlog
	l.badLog, l.badUnlog = now, 0
	l.mu.Unlock()
	l.log.Warn("cache: a Redis value is not a cache entry; treated as a miss, overwritten by the next answer",
		"error", err.Error(), "not_logged_since_last", unlogged)
}

// Set implements Level.
func (l *LazyRedis) Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error {
	call, err := l.admit(key)
	if err != nil {
		return err
	}
	r, err := l.conn.Get()
	if err != nil {
		l.done(ctx, call, err)
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	err = r.Set(cctx, key, e, ttl)
	l.done(ctx, call, err)
	return err
}

// admit lets a call on key go to Redis, or fails it with ErrBypassed: on
// a Redis Cluster, the bypass of the master serving key decides
// (redisconn.NodeBypass).
func (l *LazyRedis) admit(key string) (redisconn.Call, error) {
	var client rueidis.Client
	var keys []string
	if r := l.conn.Loaded(); r != nil {
		client = r.client
		if client.Mode() == rueidis.ClientModeCluster { // a single Redis needs no key
			keys = []string{r.prefix + key}
		}
	}
	call, _, ok := l.bypass.Admit(l.now(), client, keys...)
	if !ok {
		return call, ErrBypassed
	}
	return call, nil
}

// done records a call's outcome: err the call's error (nil, or a miss'
// nil), ctx the caller's context. An error Redis answered (OOM, a value
// that is not an entry) is a Redis that is up.
func (l *LazyRedis) done(ctx context.Context, call redisconn.Call, err error) {
	switch {
	case err == nil || !redisDown(err):
		call.Up()
	case ctx.Err() != nil:
		call.Abandon()
	default:
		call.Down(l.now(), err)
	}
}

// redisDown reports whether err says Redis is unreachable, hung or
// unusable (redisconn.IsOutage), rather than an answer of Redis about the
// call (an error reply such as OOM, a value that is not an entry).
func redisDown(err error) bool {
	var de *decodeError
	if errors.As(err, &de) {
		return false
	}
	return redisconn.IsOutage(err)
}

// decodeError is a value read from Redis that is not an entry.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// Degraded reports whether the level bypasses the whole Redis now (its
// metric; not one Cluster master's keys alone).
func (l *LazyRedis) Degraded() bool { return l.bypass.Down() }

// LocalHits is how many reads rueidis' client-side cache answered.
func (l *LazyRedis) LocalHits() int64 {
	if r := l.conn.Loaded(); r != nil {
		return r.LocalHits()
	}
	return 0
}

// Close closes the client, if one was made; later calls fail.
func (l *LazyRedis) Close() {
	l.bypass.Close()
	l.conn.Close()
}
