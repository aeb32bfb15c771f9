package config

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/sluice-gw/sluice/internal/rate"
)

// RateLimits is the rate_limits section:
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
// requests takes nginx limit_req syntax (rate.ParseNginx); "off" lifts a
// limit in an override. The zero RateLimits limits nothing;
// internal/ratelimit builds the limiter from it.
type RateLimits struct {
	Store     string              `yaml:"store"`
	MaxKeys   int                 `yaml:"max_keys"` // local store bound; default DefaultRateLimitMaxKeys
	Redis     RateLimitRedis      `yaml:"redis"`
	Global    RateRule            `yaml:"global"`
	PerKey    RateRule            `yaml:"per_key"`
	PerTenant RateRule            `yaml:"per_tenant"`
	PerIP     RateRule            `yaml:"per_ip"`
	Keys      map[string]RateRule `yaml:"keys"`
	Tenants   map[string]RateRule `yaml:"tenants"`
}

// RateRule is one scope's limits. An unset field inherits (in keys and
// tenants overrides) or means no limit.
type RateRule struct {
	Requests        *rate.Limit `yaml:"requests,omitempty"`
	TokensPerMinute *int64      `yaml:"tokens_per_minute,omitempty"`
}

// Over is r with base's value for every field r leaves unset: an
// override of keys or tenants merged over per_key or per_tenant.
func (r RateRule) Over(base RateRule) RateRule {
	if r.Requests == nil {
		r.Requests = base.Requests
	}
	if r.TokensPerMinute == nil {
		r.TokensPerMinute = base.TokensPerMinute
	}
	return r
}

// RateLimitRedis is the shared rate-limit store.
type RateLimitRedis struct {
	Redis `yaml:",inline"`
	// FailureMode: open (default; each replica enforces its share) or
	// closed (refuse) while Redis is unreachable.
	FailureMode string `yaml:"failure_mode"`
	// Replicas is the number of gateway replicas; fail-open enforces
	// 1/Replicas of each limit per replica. Default 1.
	Replicas int `yaml:"replicas"`
}

// Rate-limit failure modes.
const (
	FailOpen   = "open"
	FailClosed = "closed"
)

// KeyRef names an API key in error messages and logs without revealing
// it: the start of its SHA-256.
func KeyRef(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// Validate reports every problem of the section, each naming its key.
func (c RateLimits) Validate() error {
	var v validator
	c.validate(v.bad)
	return v.err()
}

func (c RateLimits) validate(bad func(key, format string, args ...any)) {
	rule := func(path string, r RateRule) {
		if l := r.Requests; l != nil && !l.IsZero() {
			if err := l.Validate(); err != nil {
				bad("rate_limits."+path+".requests", "%v", err)
			}
		}
		if n := r.TokensPerMinute; n != nil && *n < 0 {
			bad("rate_limits."+path+".tokens_per_minute", "must be >= 0")
		} else if n != nil && *n > 0 {
			if err := rate.TokensPerMinute(*n).Validate(); err != nil {
				bad("rate_limits."+path+".tokens_per_minute", "%v", err)
			}
		}
	}
	rule("global", c.Global)
	rule("per_key", c.PerKey)
	rule("per_tenant", c.PerTenant)
	rule("per_ip", c.PerIP)
	for k, r := range c.Keys {
		rule("keys["+KeyRef(k)+"]", r.Over(c.PerKey)) // the key itself is a secret
	}
	for t, r := range c.Tenants {
		rule("tenants["+t+"]", r.Over(c.PerTenant))
	}
	switch c.Store {
	case "", RateLimitStoreLocal:
	case RateLimitStoreRedis:
		rd := c.Redis
		if len(rd.Addrs) == 0 {
			bad("rate_limits.redis.addrs", "required with store: redis")
		}
		if rd.FailureMode != "" && rd.FailureMode != FailOpen && rd.FailureMode != FailClosed {
			bad("rate_limits.redis.failure_mode", "failure mode %q: want open or closed", rd.FailureMode)
		}
		if rd.Replicas < 0 {
			bad("rate_limits.redis.replicas", "must be >= 1 (0 or unset: %d), got %d", DefaultRateLimitRedisReplicas, rd.Replicas)
		}
		rd.validate("rate_limits.redis", bad)
	default:
		bad("rate_limits.store", "%q, want local or redis", c.Store)
	}
	if c.MaxKeys < 0 { // read as the default before: a typo for a bound silently became 100000
		bad("rate_limits.max_keys", "must be >= 0 (0 or unset: %d), got %d", DefaultRateLimitMaxKeys, c.MaxKeys)
	}
}
