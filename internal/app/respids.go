package app

import (
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// responseIDsRedis is the Redis through which replicas share the
// Responses API ids (gateway.ResponseIDsRedis), nil when none is
// configured. It is the rate limits' store (rate_limits.store: redis),
// the deployment's state that must hold across replicas, else the cache's
// second level (cache.redis). Keys go under that section's key_prefix
// followed by "resp:" ("sluice:resp:" when it sets none); one call is
// bounded by its timeout, unset the section's documented default, the one
// its own calls take: 100ms (rate_limits.redis), 50ms (cache.redis; it
// was 100ms here, the gateway's default, until branch smallleft5). Read
// at start, as cache.redis is: a reload does not move it.
//
// The ids use the client clients holds for that Redis, the one the rate
// limits and the cache's second level use there too: one connection set
// per node for all three, not one each.
func responseIDsRedis(cfg *config.Config, clients *redisconn.Clients) *gateway.ResponseIDsRedis {
	var rd config.Redis
	var timeout time.Duration // the section's, as its own calls take it
	switch {
	case cfg.RateLimits.Store == config.RateLimitStoreRedis && len(cfg.RateLimits.Redis.Addrs) > 0:
		rd, timeout = cfg.RateLimits.Redis.Redis, config.DefaultRateLimitRedisTimeout
	case len(cfg.Cache.Redis.Addrs) > 0:
		rd, timeout = cfg.Cache.Redis.Redis, config.DefaultCacheRedisTimeout
	default:
		return nil
	}
	if rd.Timeout > 0 {
		timeout = rd.Timeout.D()
	}
	out := &gateway.ResponseIDsRedis{Client: redisconn.Option(rd), Clients: clients, Timeout: timeout}
	if rd.KeyPrefix != "" {
		out.Prefix = rd.KeyPrefix + "resp:"
	}
	return out
}
