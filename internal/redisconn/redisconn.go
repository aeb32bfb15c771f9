// Package redisconn is Sluice's one way of reaching Redis, used by the
// rate limits' store, the Responses API's shared ids and the cache's second
// level: the rueidis options made from a config.Redis, and a connection
// made on first use, so the gateway starts (and serves: rate limits by
// their failure mode, the cache from L1 and upstream) while Redis is down.
// Users of the same Redis share one client (Clients).
package redisconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
)

// Option is the rueidis configuration for c, the same for every user of
// that Redis (so that Clients gives them one client): a bounded dial,
// background pings that detect a dead connection (per-call deadlines come
// from the caller's context), the auto-pipelining that lets many
// goroutines share a few connections, CLIENT SETNAME SharedName, and
// rueidis' client-side cache on. The cache is what the response cache's
// second level reads through (DoCache); it costs the other users nothing:
// rueidis turns tracking on in OPTIN mode, so Redis tracks only the keys
// read right after the CLIENT CACHING YES that DoCache sends, never a
// rate-limit bucket or a Responses id read with Do. A Redis that cannot
// track (no RESP3: before 6, or HELLO renamed away) gets the client
// without it (dial), at start or when it replaces the Redis under a
// running client (swapClient). One address with a non-cluster server gives a
// single-node client; otherwise the addresses seed a Cluster client.
func Option(c config.Redis) rueidis.ClientOption {
	connect := c.ConnectTimeout.D()
	if connect <= 0 {
		connect = config.DefaultRedisConnectTimeout
	}
	return rueidis.ClientOption{
		InitAddress:      c.Addrs,
		Username:         c.Username,
		Password:         c.Password,
		SelectDB:         c.DB,
		ClientName:       SharedName,
		Dialer:           net.Dialer{Timeout: connect},
		ConnWriteTimeout: 5 * time.Second,
	}
}

// dial makes a client with opt; a Redis without client-side caching
// (rueidis.ErrNoCache: no RESP3, or CLIENT TRACKING refused) gets one
// without it at once, rather than none: the rate limits and the Responses
// ids need no tracking, and the cache's reads then each go to Redis
// (rueidis' DoCache falls back to Do). The client is a swapClient, which
// does the same when the Redis is replaced by one without RESP3 later;
// log gets its one line then (nil: slog.Default()), counts counts it (nil:
// not counted).
func dial(opt rueidis.ClientOption, log *slog.Logger, counts *swapCounts) (rueidis.Client, error) {
	client, err := rueidis.NewClient(opt)
	if err != nil && !opt.DisableCache && errors.Is(err, rueidis.ErrNoCache) {
		opt.DisableCache = true
		client, err = rueidis.NewClient(opt)
	}
	if err != nil {
		return nil, err
	}
	return newSwapClient(opt, client, log, counts), nil
}

// ErrUnavailable is returned (wrapped) while there is no connection: a
// dial is under way, failed dials are being spaced, the dial failed, or
// the connection was closed.
var ErrUnavailable = errors.New("redis unavailable")

// errAnotherDials is ErrUnavailable while another user of a shared client
// dials it.
var errAnotherDials = fmt.Errorf("%w: connecting", ErrUnavailable)

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

// NewSharedLazy is NewLazy whose client is the one clients holds for
// opt's Redis, shared with every other Lazy made from clients for the same
// Redis (addresses, database, credentials: Clients): a dial made by one is
// used by all, and the client is closed when the last of them is closed.
// A nil clients is NewLazy.
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
		return nil, errAnotherDials // another caller is dialling
	}
	defer l.mu.Unlock()
	if v := l.v.Load(); v != nil {
		return v, nil
	}
	if l.closed {
		return nil, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	now := l.now()
	if l.redial > 0 && now.Sub(l.lastDial) < l.redial {
		return nil, ErrUnavailable
	}
	client, err := l.dial()
	if errors.Is(err, errAnotherDials) {
		return nil, err // not a dial of ours: nothing to space, the next Get may find the client
	}
	l.lastDial = now
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
	return dial(l.opt, nil, nil)
}
