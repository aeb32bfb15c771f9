package config

import (
	"fmt"
	"time"
)

// Redis is how Sluice reaches a Redis node or Cluster. The rate limits'
// shared store (rate_limits.redis) and the cache's second level
// (cache.redis) each have one, with the same keys; each connection is
// dialled on first use (internal/redisconn), so the gateway starts while
// Redis is down.
type Redis struct {
	// Addrs: one address is a single node; several are Cluster seeds.
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	DB       int      `yaml:"db"` // single node only
	// KeyPrefix starts every key. Default "sluice:rl:" (rate limits),
	// "sluice:cache:" (cache).
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one call. Default 100ms (rate limits: then the
	// failure mode applies), 50ms (cache: then the request goes upstream).
	Timeout Duration `yaml:"timeout"`
	// ConnectTimeout bounds dialling Redis. Default 500ms.
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// DefaultRedisConnectTimeout is ConnectTimeout's default.
const DefaultRedisConnectTimeout = 500 * time.Millisecond

// The defaults applied where the Redis keys are read (internal/ratelimit,
// internal/cache): kept here so docs/CONFIG.md prints the values in force.
const (
	DefaultRateLimitRedisTimeout  = 100 * time.Millisecond
	DefaultCacheRedisTimeout      = 50 * time.Millisecond
	DefaultRateLimitRedisPrefix   = "sluice:rl:"
	DefaultCacheRedisPrefix       = "sluice:cache:"
	DefaultCacheRedisLocalTTL     = 30 * time.Second
	DefaultRateLimitRedisReplicas = 1
	// DefaultRateLimitMaxKeys bounds the local store's buckets when
	// rate_limits.max_keys is 0 or unset (ratelimit.NewLocalStore).
	DefaultRateLimitMaxKeys = 100_000
)

// The rate limits' stores (rate_limits.store); unset is local.
const (
	RateLimitStoreLocal = "local"
	RateLimitStoreRedis = "redis"
)

// validateRedis checks the connection keys of the section at path.
func (r Redis) validate(path string, bad func(key, format string, args ...any)) {
	if r.Timeout < 0 || r.ConnectTimeout < 0 {
		bad(path, "timeout and connect_timeout must not be negative")
	}
	for i, a := range r.Addrs {
		if a == "" {
			bad(fmt.Sprintf("%s.addrs[%d]", path, i), "must not be empty")
		}
	}
}
