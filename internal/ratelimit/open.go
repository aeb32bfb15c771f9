package ratelimit

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// RulesFrom compiles the rate_limits section: overrides are merged field
// by field over per_key / per_tenant (config.RateRule.Over).
func RulesFrom(c config.RateLimits) Rules {
	rs := Rules{
		Global:    ruleFrom(c.Global),
		PerKey:    ruleFrom(c.PerKey),
		PerTenant: ruleFrom(c.PerTenant),
		PerIP:     ruleFrom(c.PerIP),
	}
	if len(c.Keys) > 0 {
		rs.Keys = make(map[string]Rule, len(c.Keys))
		for k, rc := range c.Keys {
			rs.Keys[k] = ruleFrom(rc.Over(c.PerKey))
		}
	}
	if len(c.Tenants) > 0 {
		rs.Tenants = make(map[string]Rule, len(c.Tenants))
		for t, rc := range c.Tenants {
			rs.Tenants[t] = ruleFrom(rc.Over(c.PerTenant))
		}
	}
	return rs
}

// ruleFrom is a scope's rule; an unset field is no limit.
func ruleFrom(rc config.RateRule) Rule {
	var r Rule
	if rc.Requests != nil {
		r.Requests = *rc.Requests
	}
	if rc.TokensPerMinute != nil {
		r.TokensPerMinute = *rc.TokensPerMinute
	}
	return r
}

// Open builds the Limiter the config describes: a LocalStore, or a
// RedisStore behind a FailoverStore whose fallback is a LocalStore. Redis is
// dialled now, but an unreachable Redis does not stop the gateway from
// starting: the failure mode applies until it answers (the connection is a
// redisconn.Lazy, redialled by the next check after a failure). reg and log
// may be nil. The Redis client is the one clients holds for that Redis,
// shared with the process' other users of it (nil: a client of its own).
// Close the Limiter to release it.
//
// prev, when not nil, is the Limiter this one replaces (a reload that
// changed the limits): its in-process buckets carry over when max_keys is
// unchanged, so a reload does not hand every key, tenant and address a
// fresh burst and token budget. A bucket keeps its state, the time it
// drains to idle, which the new limits read in their own terms.
func Open(cfg config.RateLimits, reg prometheus.Registerer, log *slog.Logger, clients *redisconn.Clients, prev *Limiter) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules := RulesFrom(cfg)
	if log == nil {
		log = slog.Default()
	}
	local := NewLocalStore(cfg.MaxKeys)
	if kept := prev.localStore(); kept != nil && kept.Cap() == local.Cap() {
		local = kept
	}
	if reg != nil {
		if err := registerLocalStore(reg, local); err != nil {
			return nil, err
		}
	}
	if cfg.Store != config.RateLimitStoreRedis {
		l, err := NewLimiter(local, rules, reg)
		if err != nil {
			return nil, err
		}
		l.local = local
		return l, nil
	}
	mode, _ := ParseFailureMode(cfg.Redis.FailureMode) // validated above
	conn := newRedisConn(cfg.Redis, clients)
	if _, err := conn.Get(); err != nil {
		log.Warn("rate limit store: redis not reachable at start; failure mode applies until it is",
			"failure_mode", mode.String(), "error", err.Error())
	}
	fs, err := NewFailoverStore(lazyStore{conn}, local, FailoverOptions{
		Mode: mode, Replicas: cfg.Redis.Replicas, Timeout: cfg.Redis.Timeout.D(),
		Logger: log, Registerer: reg, Route: routeOf(conn),
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	l, err := NewLimiter(fs, rules, reg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	l.closer = func() { fs.Close(); conn.Close() }
	l.local = local
	return l, nil
}

// localStore is l's in-process store (its whole store, or the fallback of
// its Redis store), when Open made it; nil otherwise, or for a nil l.
func (l *Limiter) localStore() *LocalStore {
	if l == nil {
		return nil
	}
	return l.local
}

// newRedisConn is the shared store's connection, made on first use. A
// check that finds no connection dials (one at a time: the others fail at
// once and the FailoverStore answers them). Buckets are read with plain
// commands, which the client's OPTIN tracking leaves untracked: they
// change on every request, and no invalidation is sent for them.
func newRedisConn(c config.RateLimitRedis, clients *redisconn.Clients) *redisconn.Lazy[RedisStore] {
	ropt := RedisOptions{Prefix: c.KeyPrefix}
	build := func(client rueidis.Client) *RedisStore { return NewRedisStore(client, ropt) }
	return redisconn.NewSharedLazy(clients, redisconn.Option(c.Redis), build, 0, nil)
}

// lazyStore is a Store over a connection made on first use.
type lazyStore struct{ conn *redisconn.Lazy[RedisStore] }

// Take implements Store.
func (s lazyStore) Take(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, s, Op{Key: key, Limit: l, Cost: cost}, now)
}

// Charge implements Store.
func (s lazyStore) Charge(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error) {
	return one(ctx, s, Op{Key: key, Limit: l, Cost: cost, Force: true}, now)
}

// Apply implements Store.
func (s lazyStore) Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error) {
	rs, err := s.conn.Get()
	if err != nil {
		return nil, err
	}
	return rs.Apply(ctx, ops, now)
}

// ApplyEach implements eachApplier: without a connection every op fails.
func (s lazyStore) ApplyEach(ctx context.Context, ops []Op, now time.Time) ([]Decision, []error) {
	rs, err := s.conn.Get()
	if err != nil {
		errs := make([]error, len(ops))
		for i := range errs {
			errs[i] = err
		}
		return make([]Decision, len(ops)), errs
	}
	return rs.ApplyEach(ctx, ops, now)
}

// routeOf is the FailoverStore's Route over conn: its client when
// connected, and on a Redis Cluster the ops' Redis keys (on a single Redis
// no key is needed: the whole store is one).
func routeOf(conn *redisconn.Lazy[RedisStore]) func(ops []Op) (rueidis.Client, []string) {
	return func(ops []Op) (rueidis.Client, []string) {
		st := conn.Loaded()
		if st == nil {
			return nil, nil
		}
		if st.client.Mode() != rueidis.ClientModeCluster {
			return st.client, nil
		}
		keys := make([]string, len(ops))
		for i, op := range ops {
			keys[i] = st.Key(op.Key)
		}
		return st.client, keys
	}
}
