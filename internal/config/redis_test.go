package config

import (
	"strings"
	"testing"
	"time"
)

// TestRedisSectionsKeepTheirKeys: rate_limits.redis and cache.redis share
// one connection type (Redis, inlined) and read the keys they always had.
func TestRedisSectionsKeepTheirKeys(t *testing.T) {
	c, err := Parse([]byte(`
rate_limits:
  store: redis
  redis: {addrs: ["10.0.0.1:6379"], username: u, password: p, db: 2, key_prefix: "rl:", timeout: 80ms, connect_timeout: 1s, failure_mode: closed, replicas: 3}
  global: {requests: "10r/s"}
cache:
  redis: {addrs: ["10.0.0.2:6379", "10.0.0.3:6379"], username: cu, password: cp, db: 1, key_prefix: "c:", timeout: 40ms, connect_timeout: 2s, local_ttl: 10s, bloom_keys: 1000}
` + minimal))
	if err != nil {
		t.Fatal(err)
	}
	rl := c.RateLimits.Redis
	want := Redis{Addrs: []string{"10.0.0.1:6379"}, Username: "u", Password: "p", DB: 2, KeyPrefix: "rl:",
		Timeout: Duration(80 * time.Millisecond), ConnectTimeout: Duration(time.Second)}
	if rl.Addrs[0] != want.Addrs[0] || rl.Username != want.Username || rl.Password != want.Password || rl.DB != want.DB ||
		rl.KeyPrefix != want.KeyPrefix || rl.Timeout != want.Timeout || rl.ConnectTimeout != want.ConnectTimeout ||
		rl.FailureMode != FailClosed || rl.Replicas != 3 {
		t.Fatalf("rate_limits.redis: %+v", rl)
	}
	cr := c.Cache.Redis
	if len(cr.Addrs) != 2 || cr.Username != "cu" || cr.DB != 1 || cr.KeyPrefix != "c:" || cr.Timeout.D() != 40*time.Millisecond ||
		cr.ConnectTimeout.D() != 2*time.Second || cr.LocalTTL.D() != 10*time.Second || cr.BloomKeys != 1000 {
		t.Fatalf("cache.redis: %+v", cr)
	}

	// Each section still refuses the other's keys, naming what it allows.
	_, err = Parse([]byte("cache:\n  redis: {replicas: 2}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "cache.redis.replicas") || !strings.Contains(err.Error(), "local_ttl") ||
		!strings.Contains(err.Error(), "connect_timeout") {
		t.Fatalf("a rate-limit key in cache.redis: %v", err)
	}
	_, err = Parse([]byte("rate_limits:\n  redis: {local_ttl: 1s}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "rate_limits.redis.local_ttl") || !strings.Contains(err.Error(), "failure_mode") {
		t.Fatalf("a cache key in rate_limits.redis: %v", err)
	}
	_, err = Parse([]byte("rate_limits:\n  store: redis\n  redis: {addrs: [x], timeout: -1s}\n" + minimal))
	if err == nil || !strings.Contains(err.Error(), "rate_limits.redis") || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("a negative rate-limit redis timeout: %v", err)
	}
}
