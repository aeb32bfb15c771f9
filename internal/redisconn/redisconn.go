// Package redisconn is Sluice's one way of reaching Redis, used by the
// rate limits' store, the Responses API's shared ids and the cache's second
// level: the rueidis options made from a config.Redis, and a connection
// made on first use, so the gateway starts (and serves: rate limits by
// their failure mode, the cache from L1 and upstream) while Redis is down.
// Users of the same Redis with the same options share one client
// (Clients).
package redisconn

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
)

// Option is the rueidis configuration for c: a bounded dial, background
// pings that detect a dead connection (per-call deadlines come from the
// caller's context), and the auto-pipelining that lets many goroutines
// share a few connections. name is the CLIENT SETNAME. clientCache turns
// on rueidis' client-side cache (it needs Redis 6+, RESP3): right for
// cached answers, which never change under a key; wrong for rate-limit
// buckets, which change on every request. One address with a non-cluster
// server gives a single-node client; otherwise the addresses seed a
// Cluster client.
func Option(c config.Redis, name string, clientCache bool) rueidis.ClientOption {
	connect := c.ConnectTimeout.D()
	if connect <= 0 {
		connect = config.DefaultRedisConnectTimeout
	}
	return rueidis.ClientOption{
		InitAddress:      c.Addrs,
		Username:         c.Username,
		Password:         c.Password,
		SelectDB:         c.DB,
		ClientName:       name,
		DisableCache:     !clientCache,
		Dialer:           net.Dialer{Timeout: connect},
		ConnWriteTimeout: 5 * time.Second,
	}
}

// ErrUnavailable is returned (wrapped) while there is no connection: a
// dial is under way, failed dials are being spaced, the dial failed, or
// the connection was closed.
var ErrUnavailable = errors.New("redis unavailable")

// Lazy is a client made on first use and the value built on it (a cache
// level, a rate-limit store). At most one dial runs at a time, and failed
// dials are spaced by the redial interval; meanwhile Get fails at once
// with ErrUnavailable, so a caller never waits on a dial another started.
// Once connected, rueidis reconnects by itself. Safe for concurrent use.
type Lazy[T any] struct {
	opt    rueidis.ClientOption
	build  func(rueidis.Client) *T
	redial time.Duration
	now    func() time.Time

	v atomic.Pointer[T]

	clients *Clients // nil: the Lazy dials and closes a client of its own

	mu       sync.Mutex // held while dialling
	client   rueidis.Client
	lastDial time.Time
	closed   bool
}

// NewLazy returns a Lazy that dials with opt and builds its value with
// build. redial spaces dial attempts while Redis is unreachable (0: every
// Get may dial); now may be nil (time.Now).
func NewLazy[T any](opt rueidis.ClientOption, build func(rueidis.Client) *T, redial time.Duration, now func() time.Time) *Lazy[T] {
	if now == nil {
		now = time.Now
	}
	return &Lazy[T]{opt: opt, build: build, redial: redial, now: now}
}

// NewSharedLazy is NewLazy whose client is the one clients holds for opt,
// shared with every other Lazy made from clients with equal options: a
// dial made by one is used by all, and the client is closed when the last
// of them is closed. A nil clients is NewLazy.
func NewSharedLazy[T any](clients *Clients, opt rueidis.ClientOption, build func(rueidis.Client) *T, redial time.Duration, now func() time.Time) *Lazy[T] {
	l := NewLazy(opt, build, redial, now)
	l.clients = clients
	return l
}

// Get returns the value, dialling first when there is no client yet.
func (l *Lazy[T]) Get() (*T, error) {
	if v := l.v.Load(); v != nil {
		return v, nil
	}
	if !l.mu.TryLock() {
		return nil, fmt.Errorf("%w: connecting", ErrUnavailable) // another caller is dialling
	}
	defer l.mu.Unlock()
	if v := l.v.Load(); v != nil {
		return v, nil
	}
	if l.closed {
		return nil, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if now := l.now(); l.redial > 0 && now.Sub(l.lastDial) < l.redial {
		return nil, ErrUnavailable
	} else {
		l.lastDial = now
	}
	client, err := l.dial()
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrUnavailable, l.opt.InitAddress, err)
	}
	l.client = client
	v := l.build(client)
	l.v.Store(v)
	return v, nil
}

// Loaded returns the value when connected, else nil; it never dials.
func (l *Lazy[T]) Loaded() *T { return l.v.Load() }

// Close closes the client, if one was made; later calls fail.
func (l *Lazy[T]) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.client != nil {
		if l.clients != nil {
			l.clients.release(l.opt, l.client)
		} else {
			l.client.Close()
		}
		l.client = nil
	}
	l.v.Store(nil)
}

func (l *Lazy[T]) dial() (rueidis.Client, error) {
	if l.clients != nil {
		return l.clients.acquire(l.opt)
	}
	return rueidis.NewClient(l.opt)
}
