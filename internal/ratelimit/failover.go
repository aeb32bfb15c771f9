package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// FailureMode says what a FailoverStore does while its shared store is down.
type FailureMode int

const (
	// FailOpen keeps limiting, on this replica alone, at its share of each
	// limit (Limit.Share(Replicas)): N replicas together still admit about
	// the configured rate, though no longer exactly.
	FailOpen FailureMode = iota
	// FailClosed refuses every request with ErrStoreUnavailable: nothing
	// passes unmetered.
	FailClosed
)

// ParseFailureMode reads rate_limits.redis.failure_mode: "open" or
// "closed" ("" is open).
func ParseFailureMode(s string) (FailureMode, error) {
	switch s {
	case "", config.FailOpen:
		return FailOpen, nil
	case config.FailClosed:
		return FailClosed, nil
	}
	return 0, fmt.Errorf("failure mode %q: want open or closed", s)
}

func (m FailureMode) String() string {
	if m == FailClosed {
		return "closed"
	}
	return "open"
}

// FailoverOptions configure a FailoverStore. Zero values mean the defaults.
type FailoverOptions struct {
	Mode FailureMode
	// Replicas is how many gateway replicas share the limits; fail-open
	// enforces 1/Replicas of each limit locally. Default 1.
	Replicas int
	// Timeout bounds one call to the shared store, so a hung Redis costs a
	// request at most this much before the fallback answers. Default 100ms.
	Timeout time.Duration
	// Threshold is how many calls in a row must fail before the store is
	// bypassed; each failing call takes the failure mode itself. Default
	// DefaultThreshold.
	Threshold int
	// Backoff is how long after a failure the shared store is tried again;
	// it doubles on each failed retry up to MaxBackoff. Defaults 500ms, 10s.
	Backoff, MaxBackoff time.Duration
	// Logger gets one line when the store goes down and one when it
	// recovers (never one per request). Default slog.Default().
	Logger *slog.Logger
	// Registerer gets sluice_ratelimit_store_errors_total,
	// sluice_ratelimit_store_degraded and
	// sluice_ratelimit_store_degraded_nodes. nil registers nothing.
	Registerer prometheus.Registerer
	// Route, when set, is the client the shared store calls through now
	// (nil: not connected) and the Redis keys of ops: on a Redis Cluster, a
	// master that fails puts only the keys on it in the failure mode
	// (redisconn.NodeBypass). nil: the whole store is one.
	Route func(ops []Op) (rueidis.Client, []string)
}

// DefaultThreshold is FailoverOptions.Threshold's default: two calls in a
// row. One call slower than the timeout (a pause of the gateway or of
// Redis, a busy machine) costs the request that made it its failure mode,
// as Envoy's rate limit filter does for each call it cannot complete, but
// not every request of the next half second: under fail-closed that
// would be half a second of refusals for one late reply. A Redis that is
// down fails every call, so two in a row cost it one timeout more at most.
const DefaultThreshold = 2

// FailoverStore wraps a shared store (Redis) with a fallback for when it
// fails or times out. While healthy every call goes to the shared store.
// A call that fails answers by the failure mode: from the fallback
// (fail-open) or refused (fail-closed). Threshold outages in a row
// (redisconn.IsOutage: unreachable, hung, unusable; not an error reply
// such as OOM, which fails its call alone) make the store "degraded" (redisconn.Bypass): calls then take the failure
// mode without touching the shared store until the back-off has passed;
// then one call at a time retries it, and the first success ends the
// degraded state. Time is the now passed to each call.
//
// Buckets do not move between the stores: after a switch the other store
// starts from what it last knew (usually idle), so a transition can let
// up to one burst per replica through.
type FailoverStore struct {
	primary  Store
	fallback *LocalStore
	opt      FailoverOptions
	bypass   *redisconn.NodeBypass
	errs     prometheus.Counter
	degraded prometheus.Gauge
	nodes    prometheus.Gauge
}

// NewFailoverStore wraps primary; fallback serves fail-open requests.
func NewFailoverStore(primary Store, fallback *LocalStore, opt FailoverOptions) (*FailoverStore, error) {
	if opt.Replicas < 1 {
		opt.Replicas = config.DefaultRateLimitRedisReplicas
	}
	if opt.Timeout <= 0 {
		opt.Timeout = config.DefaultRateLimitRedisTimeout
	}
	if opt.Threshold < 1 {
		opt.Threshold = DefaultThreshold
	}
	f := &FailoverStore{
		primary: primary, fallback: fallback, opt: opt,
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_ratelimit_store_errors_total",
			Help: "Calls to the shared rate limit store (Redis) that failed or timed out.",
		}),
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ratelimit_store_degraded",
			Help: "1 while the shared rate limit store is down and the failure mode (open: local share; closed: refuse) applies.",
		}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_ratelimit_store_degraded_nodes",
			Help: "Redis Cluster masters bypassed now: the keys whose slots they serve take the failure mode, the others are served.",
		}),
	}
	f.bypass = redisconn.NewNodeBypass(redisconn.BypassOptions{
		Threshold: opt.Threshold, Backoff: opt.Backoff, MaxBackoff: opt.MaxBackoff, Logger: opt.Logger,
		DownMsg: "rate limit store unavailable; applying failure mode until it recovers",
		UpMsg:   "rate limit store recovered",
		Attrs:   []any{"failure_mode", opt.Mode.String(), "replicas", opt.Replicas},
		Gauge:   f.degraded,
	}, f.nodes)
	if opt.Registerer != nil {
		for _, c := range []prometheus.Collector{f.errs, f.degraded, f.nodes} {
			if err := opt.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Close stops the store's slot map refresh, if one is under way.
func (f *FailoverStore) Close() { f.bypass.Close() }

// Degraded reports whether the whole shared store is currently bypassed
// (not one Cluster master's keys alone).
func (f *FailoverStore) Degraded() bool { return f.bypass.Down() }

// Take implements Store.
func (f *FailoverStore) Take(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, f, Op{Key: key, Limit: l, Cost: cost}, now)
}

// Charge implements Store.
func (f *FailoverStore) Charge(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, f, Op{Key: key, Limit: l, Cost: cost, Force: true}, now)
}

// Apply implements Store.
func (f *FailoverStore) Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error) {
	var client rueidis.Client
	var keys []string
	if f.opt.Route != nil {
		client, keys = f.opt.Route(ops)
	}
	if each, ok := f.primary.(eachApplier); ok && len(keys) > 1 && !f.bypass.Down() {
		if groups := f.bypass.Group(client, keys); len(groups) > 1 {
			return f.applySplit(ctx, each, client, keys, groups, ops, now)
		}
	}
	call, retry, ok := f.bypass.Admit(now, client, keys...)
	if !ok {
		return f.fallbackApply(ctx, ops, now, retry, nil)
	}
	cctx, cancel := context.WithTimeout(ctx, f.opt.Timeout)
	ds, err := f.primary.Apply(cctx, ops, now)
	cancel()
	if err == nil {
		call.Up()
		return ds, nil
	}
	if ctx.Err() != nil || isInvalid(err) {
		// The caller gave up, or the request itself is bad: not the
		// store's fault, so no state change.
		call.Abandon()
		return nil, err
	}
	f.errs.Inc()
	if !redisconn.IsOutage(err) {
		// An error reply (OOM, WRONGTYPE, a script error): Redis is there
		// and answered about this call, so this call alone takes the
		// failure mode and the next one asks Redis again, as the cache's
		// level does. Bypassing it would refuse (fail-closed) or
		// under-meter (fail-open) for a back-off calls it may serve.
		call.Up()
		return f.fallbackApply(ctx, ops, now, 0, err)
	}
	retry, _ = call.Down(now, err) // 0 below the threshold: a fail-closed refusal says 1ms (Retry-After: 1)
	return f.fallbackApply(ctx, ops, now, retry, err)
}

// fallbackApply answers while the primary is down. cause is the failure that
// just happened, or nil when the primary was skipped.
func (f *FailoverStore) fallbackApply(ctx context.Context, ops []Op, now time.Time, retry time.Duration, cause error) ([]Decision, error) {
	if f.opt.Mode == FailClosed {
		if cause == nil {
			cause = errors.New("waiting to retry after an earlier failure")
		}
		ds := make([]Decision, len(ops))
		for i, op := range ops {
			ds[i] = Decision{RetryAfter: max(retry, time.Millisecond), Limit: op.Limit.Capacity(), Rate: op.Limit.Rate}
		}
		return ds, fmt.Errorf("%w (fail-closed): %w", ErrStoreUnavailable, cause)
	}
	local := make([]Op, len(ops))
	for i, op := range ops {
		local[i] = op
		local[i].Limit = op.Limit.Share(f.opt.Replicas)
	}
	return f.fallback.Apply(ctx, local, now)
}

// errInvalid marks errors in the request rather than the store.
type errInvalid struct{ error }

func (e errInvalid) Unwrap() error { return e.error }

func isInvalid(err error) bool {
	var e errInvalid
	return errors.As(err, &e)
}

// SharedStoreDown reports whether the limiter's shared store (Redis) is
// bypassed now (FailoverStore.Degraded: the failure mode answers); shared
// is false when the limiter has no shared store (store: local, or nil l).
func (l *Limiter) SharedStoreDown() (down, shared bool) {
	if l == nil {
		return false, false
	}
	fs, ok := l.store.(*FailoverStore)
	if !ok {
		return false, false
	}
	return fs.Degraded(), true
}
