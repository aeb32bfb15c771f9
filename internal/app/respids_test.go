package app

import (
	"reflect"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/ratelimit"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// TestResponseIDsRedis: the ids go to the rate limits' Redis when the
// limits use one (with the limits' client options, so the two share one
// client), else the cache's, else nowhere; under the section's prefix,
// with its timeout.
func TestResponseIDsRedis(t *testing.T) {
	cfg := config.Default()
	clients := redisconn.NewClients()
	if r := responseIDsRedis(&cfg, clients); r != nil {
		t.Fatalf("no Redis configured: %+v", r)
	}
	cfg.Cache.Redis.Addrs = []string{"cache:6379"}
	cfg.Cache.Redis.Timeout = config.Duration(30 * time.Millisecond)
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "cache:6379" || r.Prefix != "" || r.Timeout != 30*time.Millisecond {
		t.Fatalf("cache only: %+v", r)
	}
	cfg.RateLimits.Redis.Addrs = []string{"rl:6379"} // not the store yet
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "cache:6379" {
		t.Fatalf("rate limits local: %+v", r)
	}
	cfg.RateLimits.Store = "redis"
	cfg.RateLimits.Redis.KeyPrefix = "prod:"
	if r := responseIDsRedis(&cfg, clients); r == nil || r.Client.InitAddress[0] != "rl:6379" || r.Prefix != "prod:resp:" || r.Clients != clients ||
		!reflect.DeepEqual(r.Client, ratelimit.ClientOption(cfg.RateLimits.Redis.Redis)) {
		t.Fatalf("rate limits on Redis: %+v", r)
	}
}
