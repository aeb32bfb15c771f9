package config

import "time"

// Cache configures the response cache (in-process level). By default only
// deterministic requests (temperature 0 or a fixed seed) are cached, per
// tenant; a request's Cache-Control: no-store / no-cache bypasses it.
type Cache struct {
	Enabled     bool     `yaml:"enabled"`      // default true
	MaxBytes    ByteSize `yaml:"max_bytes"`    // in-process bound, default 256MiB (changes need a restart)
	TTL         Duration `yaml:"ttl"`          // successful answers, default 5m (±10% jitter)
	NegativeTTL Duration `yaml:"negative_ttl"` // 400/404/422 answers, default 10s; never 408/429/5xx
	Shared      bool     `yaml:"shared"`       // share entries across tenants (off: tenants never see each other's answers)
	MaxEntry    ByteSize `yaml:"max_entry"`    // larger responses are not cached, default 1MiB
}

func defaultCache() Cache {
	return Cache{Enabled: true, MaxBytes: 256 << 20, TTL: Duration(5 * time.Minute),
		NegativeTTL: Duration(10 * time.Second), MaxEntry: 1 << 20}
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
}
