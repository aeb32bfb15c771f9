package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ClientOption is the rueidis configuration Sluice uses for rate limiting:
// no client-side cache (buckets change on every request, and it keeps
// Redis < 6 / RESP2 servers usable), a bounded dial, and the
// auto-pipelining that lets many goroutines share a few connections.
// len(Addrs) == 1 with a non-cluster server gives a single-node client;
// otherwise the addresses seed a Cluster client.
func ClientOption(c RedisConfig) rueidis.ClientOption {
	connect := c.ConnectTimeout
	if connect <= 0 {
		connect = 500 * time.Millisecond
	}
	return rueidis.ClientOption{
		InitAddress:  c.Addrs,
		Username:     c.Username,
		Password:     c.Password,
		SelectDB:     c.DB,
		ClientName:   "sluice-ratelimit",
		DisableCache: true,
		Dialer:       net.Dialer{Timeout: connect},
		// Detects a dead connection in the background (rueidis pings);
		// per-call deadlines come from the caller's context.
		ConnWriteTimeout: 5 * time.Second,
	}
}

// redisConn is a RedisStore whose client is created on first use, so a
// gateway starts even while Redis is down. Only one caller dials at a time;
// the others fail at once with errConnecting and the FailoverStore answers
// them.
type redisConn struct {
	opt   rueidis.ClientOption
	ropt  RedisOptions
	store atomic.Pointer[RedisStore]

	mu     sync.Mutex // held while dialing
	client rueidis.Client
	closed bool
}

var errConnecting = errors.New("ratelimit: connecting to redis")

func newRedisConn(c RedisConfig) *redisConn {
	return &redisConn{opt: ClientOption(c), ropt: RedisOptions{Prefix: c.KeyPrefix}}
}

// connect dials Redis unless a client exists or another dial is running.
func (c *redisConn) connect() error {
	if c.store.Load() != nil {
		return nil
	}
	if !c.mu.TryLock() {
		return errConnecting
	}
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("ratelimit: redis store closed")
	}
	if c.store.Load() != nil {
		return nil
	}
	client, err := rueidis.NewClient(c.opt)
	if err != nil {
		return fmt.Errorf("ratelimit: connect redis %v: %w", c.opt.InitAddress, err)
	}
	c.client = client
	c.store.Store(NewRedisStore(client, c.ropt))
	return nil
}

// Close closes the client, if one was made.
func (c *redisConn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.client != nil {
		c.client.Close()
	}
}

func (c *redisConn) get() (*RedisStore, error) {
	if s := c.store.Load(); s != nil {
		return s, nil
	}
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c.store.Load(), nil
}

// Take implements Store.
func (c *redisConn) Take(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, c, Op{Key: key, Limit: l, Cost: cost}, now)
}

// Charge implements Store.
func (c *redisConn) Charge(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, c, Op{Key: key, Limit: l, Cost: cost, Force: true}, now)
}

// Apply implements Store.
func (c *redisConn) Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error) {
	s, err := c.get()
	if err != nil {
		return nil, err
	}
	return s.Apply(ctx, ops, now)
}
