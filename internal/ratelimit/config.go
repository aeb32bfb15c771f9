package ratelimit

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the rate_limits section of the gateway config:
//
//	rate_limits:
//	  store: redis                 # local (default) | redis
//	  redis:
//	    addrs: ["127.0.0.1:6379"]  # one node, or seed nodes of a Cluster
//	    password: ""
//	    failure_mode: open         # open (local share) | closed (refuse)
//	    replicas: 3                # gateway replicas sharing the limits
//	  global:     {requests: "1000r/s burst=2000"}
//	  per_key:    {requests: "10r/s burst=20 nodelay", tokens_per_minute: 100000}
//	  per_tenant: {tokens_per_minute: 1000000}
//	  per_ip:     {requests: "60r/m"}
//	  keys:                        # replace per_key for these API keys
//	    sk-abc: {requests: "100r/s burst=200 nodelay", tokens_per_minute: 2000000}
//	    sk-internal: {requests: off, tokens_per_minute: 0}
//	  tenants:                     # replace per_tenant for these tenants
//	    acme: {tokens_per_minute: 5000000}
//
// requests takes nginx limit_req syntax (see ParseNginx); "off" lifts a
// limit in an override. The zero Config limits nothing.
type Config struct {
	Store     string                `yaml:"store"`
	MaxKeys   int                   `yaml:"max_keys"` // local store bound; default 100000
	Redis     RedisConfig           `yaml:"redis"`
	Global    RuleConfig            `yaml:"global"`
	PerKey    RuleConfig            `yaml:"per_key"`
	PerTenant RuleConfig            `yaml:"per_tenant"`
	PerIP     RuleConfig            `yaml:"per_ip"`
	Keys      map[string]RuleConfig `yaml:"keys"`
	Tenants   map[string]RuleConfig `yaml:"tenants"`
}

// RuleConfig is one scope's limits. An unset field inherits (in keys and
// tenants overrides) or means no limit.
type RuleConfig struct {
	Requests        *Limit `yaml:"requests,omitempty"`
	TokensPerMinute *int64 `yaml:"tokens_per_minute,omitempty"`
}

// RedisConfig is the shared store. Durations are Go syntax ("100ms").
type RedisConfig struct {
	Addrs       []string `yaml:"addrs"`
	Username    string   `yaml:"username"`
	Password    string   `yaml:"password"`
	DB          int      `yaml:"db"`         // single node only
	KeyPrefix   string   `yaml:"key_prefix"` // default "sluice:rl:"
	FailureMode string   `yaml:"failure_mode"`
	// Replicas is the number of gateway replicas; fail-open enforces
	// 1/Replicas of each limit per replica. Default 1.
	Replicas int `yaml:"replicas"`
	// Timeout bounds one rate limit call to Redis. Default 100ms.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds dialing Redis. Default 500ms.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Validate reports every problem, each naming its key.
func (c Config) Validate() error {
	_, err := c.Rules()
	errs := []error{err}
	switch c.Store {
	case "", "local":
	case "redis":
		if len(c.Redis.Addrs) == 0 {
			errs = append(errs, errors.New("rate_limits.redis.addrs: required with store: redis"))
		}
		if _, err := ParseFailureMode(c.Redis.FailureMode); err != nil {
			errs = append(errs, fmt.Errorf("rate_limits.redis.failure_mode: %w", err))
		}
		if c.Redis.Replicas < 0 {
			errs = append(errs, errors.New("rate_limits.redis.replicas: must be >= 1"))
		}
	default:
		errs = append(errs, fmt.Errorf("rate_limits.store: %q, want local or redis", c.Store))
	}
	return errors.Join(errs...)
}

// Rules compiles the config: overrides are merged field by field over
// per_key / per_tenant.
func (c Config) Rules() (Rules, error) {
	var errs []error
	rule := func(path string, base Rule, rc RuleConfig) Rule {
		r := base
		if rc.Requests != nil {
			r.Requests = *rc.Requests
		}
		if rc.TokensPerMinute != nil {
			r.TokensPerMinute = *rc.TokensPerMinute
		}
		if !r.Requests.IsZero() {
			if err := r.Requests.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("rate_limits.%s.requests: %w", path, err))
			}
		}
		if r.TokensPerMinute < 0 {
			errs = append(errs, fmt.Errorf("rate_limits.%s.tokens_per_minute: must be >= 0", path))
		} else if err := r.tokens().Validate(); r.TokensPerMinute > 0 && err != nil {
			errs = append(errs, fmt.Errorf("rate_limits.%s.tokens_per_minute: %w", path, err))
		}
		return r
	}
	rs := Rules{
		Global:    rule("global", Rule{}, c.Global),
		PerKey:    rule("per_key", Rule{}, c.PerKey),
		PerTenant: rule("per_tenant", Rule{}, c.PerTenant),
		PerIP:     rule("per_ip", Rule{}, c.PerIP),
	}
	if len(c.Keys) > 0 {
		rs.Keys = make(map[string]Rule, len(c.Keys))
		for k, rc := range c.Keys {
			// The key itself is a secret: name it by its hash in errors.
			rs.Keys[k] = rule("keys["+hashKey(k)[:8]+"]", rs.PerKey, rc)
		}
	}
	if len(c.Tenants) > 0 {
		rs.Tenants = make(map[string]Rule, len(c.Tenants))
		for t, rc := range c.Tenants {
			rs.Tenants[t] = rule("tenants["+t+"]", rs.PerTenant, rc)
		}
	}
	return rs, errors.Join(errs...)
}

// Open builds the Limiter the config describes: a LocalStore, or a
// RedisStore behind a FailoverStore whose fallback is a LocalStore. Redis is
// dialed now, but an unreachable Redis does not stop the gateway from
// starting: the failure mode applies until it answers. reg and log may be
// nil. Close the Limiter to release the Redis connections.
func Open(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules, _ := cfg.Rules() // validated above
	if log == nil {
		log = slog.Default()
	}
	local := NewLocalStore(cfg.MaxKeys)
	if cfg.Store != "redis" {
		return NewLimiter(local, rules, reg)
	}
	mode, _ := ParseFailureMode(cfg.Redis.FailureMode) // validated above
	conn := newRedisConn(cfg.Redis)
	if err := conn.connect(); err != nil {
		log.Warn("rate limit store: redis not reachable at start; failure mode applies until it is",
			"failure_mode", mode.String(), "error", err.Error())
	}
	fs, err := NewFailoverStore(conn, local, FailoverOptions{
		Mode: mode, Replicas: cfg.Redis.Replicas, Timeout: cfg.Redis.Timeout,
		Logger: log, Registerer: reg,
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
	l.closer = conn.Close
	return l, nil
}
