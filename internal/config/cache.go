package config

import (
	"fmt"
	"path"
	"time"
)

// Cache configures the response cache. By default only deterministic
// requests (temperature 0 or a fixed seed) and embeddings are cached, per
// tenant; a request's Cache-Control: no-store / no-cache bypasses it, and
// Rules can widen or narrow that per model and key.
type Cache struct {
	Enabled     bool     `yaml:"enabled"`      // default true
	MaxBytes    ByteSize `yaml:"max_bytes"`    // in-process bound, default 256MiB (changes need a restart)
	TTL         Duration `yaml:"ttl"`          // successful answers, default 5m (±10% jitter)
	NegativeTTL Duration `yaml:"negative_ttl"` // 400/404/422 answers, default 10s; never 408/429/5xx
	Shared      bool     `yaml:"shared"`       // share entries across tenants (off: tenants never see each other's answers)
	MaxEntry    ByteSize `yaml:"max_entry"`    // larger responses are not cached, default 1MiB
	// Coalesce makes identical cacheable requests in flight share one
	// upstream call (default true).
	Coalesce bool `yaml:"coalesce"`
	// StaleWhileRevalidate serves an entry up to this long past its TTL
	// (X-Cache: STALE) while one background request refreshes it, when the
	// pool has room. 0 (default): expired entries are misses.
	StaleWhileRevalidate Duration `yaml:"stale_while_revalidate"`
	// Redis adds a shared second level; off when Addrs is empty.
	Redis CacheRedis `yaml:"redis"`
	// Rules, first match wins, decide per model and key what is cached.
	Rules []CacheRule `yaml:"rules"`
}

// CacheRedis is the shared cache level (changes need a restart). Reads use
// rueidis client-side caching: hot entries are served from the gateway's
// memory and Redis invalidates them when they change.
type CacheRedis struct {
	Redis    `yaml:",inline"`
	LocalTTL Duration `yaml:"local_ttl"` // client-side cache life, default 30s
	// BloomKeys > 0 keeps a Bloom filter of the keys this gateway stored,
	// so keys never seen skip the Redis round trip. Only keys this
	// process wrote are known: use it with a single writer replica.
	BloomKeys uint `yaml:"bloom_keys"`
}

// Cache rule modes.
const (
	CacheDeterministic = "deterministic" // the default: temperature 0, a seed, or embeddings
	CacheAlways        = "always"        // every request the rule matches
	CacheBypass        = "bypass"        // never
)

// CacheRule applies to requests whose model matches one of Models and
// whose key matches one of Keys (path.Match patterns; an empty list
// matches everything).
type CacheRule struct {
	Models  []string `yaml:"models"`
	Keys    []string `yaml:"keys"`    // API keys, as in auth.keys[].key
	Tenants []string `yaml:"tenants"` // tenants, as in auth.keys[].tenant
	Mode    string   `yaml:"mode"`    // deterministic (default), always, bypass
	TTL     Duration `yaml:"ttl"`     // overrides cache.ttl for 200 answers
}

// Matches reports whether the rule applies.
func (r *CacheRule) Matches(model, key, tenant string) bool {
	return matchAny(r.Models, model) && matchAny(r.Keys, key) &&
		(matchAny(r.Tenants, tenant) || len(r.Tenants) > 0 && matchClaim(r.Tenants, tenant))
}

// matchClaim matches a token's namespaced tenant ("jwt:acme") by its claim
// ("acme"): rules written before tokens had a namespace of their own keep
// applying to them.
func matchClaim(patterns []string, tenant string) bool {
	claim := PolicyTenant(tenant)
	return claim != "" && matchAny(patterns, claim)
}

func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func defaultCache() Cache {
	return Cache{Enabled: true, MaxBytes: 256 << 20, TTL: Duration(5 * time.Minute),
		NegativeTTL: Duration(10 * time.Second), MaxEntry: 1 << 20, Coalesce: true}
}

func (c *Config) validateCache(bad func(key, format string, args ...any)) {
	if !c.Cache.Enabled {
		return
	}
	if c.Cache.MaxBytes <= 0 {
		bad("cache.max_bytes", "must be positive")
	}
	if c.Cache.TTL <= 0 {
		bad("cache.ttl", "must be a positive duration")
	}
	if c.Cache.NegativeTTL < 0 {
		bad("cache.negative_ttl", "must not be negative")
	}
	if c.Cache.MaxEntry <= 0 || c.Cache.MaxEntry > c.Cache.MaxBytes {
		bad("cache.max_entry", "must be positive and at most max_bytes")
	}
	if c.Cache.StaleWhileRevalidate < 0 {
		bad("cache.stale_while_revalidate", "must not be negative")
	}
	rd := c.Cache.Redis
	rd.validate("cache.redis", bad)
	if rd.LocalTTL < 0 {
		bad("cache.redis.local_ttl", "must not be negative")
	}
	for i, r := range c.Cache.Rules {
		at := fmt.Sprintf("cache.rules[%d]", i)
		switch r.Mode {
		case "", CacheDeterministic, CacheAlways, CacheBypass:
		default:
			bad(at+".mode", "unknown mode %q (want deterministic, always or bypass)", r.Mode)
		}
		if r.TTL < 0 {
			bad(at+".ttl", "must not be negative")
		}
		for _, list := range [][]string{r.Models, r.Tenants} {
			for _, p := range list {
				if _, err := path.Match(p, ""); err != nil {
					bad(at, "bad pattern %q: %v", p, err)
				}
			}
		}
		for j, p := range r.Keys {
			if _, err := path.Match(p, ""); err != nil { // an API key: not quoted
				bad(fmt.Sprintf("%s.keys[%d]", at, j), "bad pattern: %v", err)
			}
		}
	}
}
