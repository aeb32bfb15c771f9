package redisconn

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// downgradeSpacing spaces the attempts to replace a client whose Redis
// stopped speaking RESP3 while each attempt fails (Redis down as well).
const downgradeSpacing = time.Second

// swapClient is the client every user of one Redis holds. It is a
// rueidis.Client that passes each call to the client it holds now, and
// replaces that client, once, by one without client-side caching when a
// call fails with rueidis.ErrNoCache: the Redis it reconnected to speaks no
// RESP3 (HELLO unknown: before Redis 6, or renamed away) or refuses CLIENT
// TRACKING. rueidis (v1.0.79) falls back to RESP2 only for a client made
// with DisableCache, and only at its reconnects: without the swap every
// call fails until the process restarts. The replacement is dialled off
// the callers' goroutines (a call that sees the error returns it at once;
// the calls after the swap use the new client); Close waits for it. The
// old client is closed once replaced: calls still on it fail, as at any
// reconnect. A client without client-side caching works with every Redis,
// so there is no swap back (the cache's reads are then each a round trip,
// as for a Redis without RESP3 at start).
type swapClient struct {
	opt    rueidis.ClientOption
	log    *slog.Logger
	now    func() time.Time
	counts *swapCounts // nil: not counted

	cur atomic.Pointer[heldClient]

	mu       sync.Mutex
	swapping bool      // a replacement is being dialled
	lastTry  time.Time // the last replacement's start
	closed   bool
	wg       sync.WaitGroup // the replacement's goroutine
}

// heldClient boxes a rueidis.Client for the atomic pointer.
type heldClient struct{ c rueidis.Client }

// swapCounts counts the replacements of swapClients: swapped (the client
// was replaced by one without client-side caching) and failed (that
// client could not connect; a later call retries).
type swapCounts struct{ swapped, failed prometheus.Counter }

// newSwapCounts registers sluice_redis_resp2_swaps_total with reg (nil:
// none, and nothing is counted).
func newSwapCounts(reg prometheus.Registerer) *swapCounts {
	if reg == nil {
		return nil
	}
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_redis_resp2_swaps_total",
		Help: "Shared Redis clients replaced, while running, by one without client-side caching because their Redis " +
			"stopped offering it (no RESP3, or CLIENT TRACKING refused), by result: swapped, or failed (the " +
			"replacement could not connect; retried on a later call). After a swap the cache's second level reads " +
			"each go to Redis."}, []string{"result"})
	reg.MustRegister(v)
	return &swapCounts{swapped: v.WithLabelValues("swapped"), failed: v.WithLabelValues("failed")}
}

func (c *swapCounts) count(ok bool) {
	switch {
	case c == nil:
	case ok:
		c.swapped.Inc()
	default:
		c.failed.Inc()
	}
}

func newSwapClient(opt rueidis.ClientOption, c rueidis.Client, log *slog.Logger, counts *swapCounts) *swapClient {
	if log == nil {
		log = slog.Default()
	}
	s := &swapClient{opt: opt, log: log, now: time.Now, counts: counts}
	s.cur.Store(&heldClient{c})
	return s
}

// client is the client calls go to now.
func (s *swapClient) client() rueidis.Client { return s.cur.Load().c }

// cached reports whether the client held now reads with client-side
// caching (for tests and diagnostics).
func (s *swapClient) cached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.opt.DisableCache
}

// check starts the replacement when err says the Redis reconnected to
// refuses client-side caching. c is the client that gave err.
func (s *swapClient) check(c rueidis.Client, err error) {
	if err == nil || !errors.Is(err, rueidis.ErrNoCache) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.closed || s.swapping || s.opt.DisableCache || s.client() != c || now.Sub(s.lastTry) < downgradeSpacing {
		return
	}
	s.swapping, s.lastTry = true, now
	opt := s.opt
	opt.DisableCache = true
	s.wg.Add(1)
	go s.replace(c, opt)
}

// replace dials a client with opt and puts it in old's place.
func (s *swapClient) replace(old rueidis.Client, opt rueidis.ClientOption) {
	defer s.wg.Done()
	nc, err := rueidis.NewClient(opt)
	s.mu.Lock()
	s.swapping = false
	if err != nil || s.closed {
		s.mu.Unlock()
		if err == nil {
			nc.Close()
		} else {
			s.counts.count(false)
			s.log.Warn("redis: the server no longer offers client-side caching (no RESP3 or CLIENT TRACKING), and a client without it could not connect; retrying on a later call",
				"addrs", opt.InitAddress, "error", err.Error())
		}
		return
	}
	s.opt = opt
	s.cur.Store(&heldClient{nc})
	s.mu.Unlock()
	old.Close()
	s.counts.count(true)
	s.log.Warn("redis: the server no longer offers client-side caching (no RESP3 or CLIENT TRACKING); reconnected without it (the cache's reads now each go to Redis)",
		"addrs", opt.InitAddress)
}

// B implements rueidis.Client.
func (s *swapClient) B() rueidis.Builder { return s.client().B() }

// Do implements rueidis.Client.
func (s *swapClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c := s.client()
	r := c.Do(ctx, cmd)
	s.check(c, r.Error())
	return r
}

// DoMulti implements rueidis.Client.
func (s *swapClient) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	c := s.client()
	rs := c.DoMulti(ctx, multi...)
	for _, r := range rs {
		if err := r.Error(); err != nil {
			s.check(c, err)
			break
		}
	}
	return rs
}

// DoCache implements rueidis.Client.
func (s *swapClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	c := s.client()
	r := c.DoCache(ctx, cmd, ttl)
	s.check(c, r.Error())
	return r
}

// DoMultiCache implements rueidis.Client.
func (s *swapClient) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	c := s.client()
	rs := c.DoMultiCache(ctx, multi...)
	for _, r := range rs {
		if err := r.Error(); err != nil {
			s.check(c, err)
			break
		}
	}
	return rs
}

// DoStream implements rueidis.Client.
func (s *swapClient) DoStream(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResultStream {
	return s.client().DoStream(ctx, cmd)
}

// DoMultiStream implements rueidis.Client.
func (s *swapClient) DoMultiStream(ctx context.Context, multi ...rueidis.Completed) rueidis.MultiRedisResultStream {
	return s.client().DoMultiStream(ctx, multi...)
}

// Receive implements rueidis.Client.
func (s *swapClient) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	c := s.client()
	err := c.Receive(ctx, subscribe, fn)
	s.check(c, err)
	return err
}

// Dedicated implements rueidis.Client.
func (s *swapClient) Dedicated(fn func(rueidis.DedicatedClient) error) error {
	return s.client().Dedicated(fn)
}

// Dedicate implements rueidis.Client.
func (s *swapClient) Dedicate() (rueidis.DedicatedClient, func()) { return s.client().Dedicate() }

// Nodes implements rueidis.Client.
func (s *swapClient) Nodes() map[string]rueidis.Client { return s.client().Nodes() }

// Mode implements rueidis.Client.
func (s *swapClient) Mode() rueidis.ClientMode { return s.client().Mode() }

// Close implements rueidis.Client: it waits for a replacement being
// dialled, then closes the client held.
func (s *swapClient) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	s.client().Close()
}
