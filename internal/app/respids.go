package app

import (
	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/ratelimit"
	"github.com/sluice-gw/sluice/internal/redisconn"
)

// responseIDsRedis is the Redis through which replicas share the
// Responses API ids (gateway.ResponseIDsRedis), nil when none is
// configured. It is the rate limits' store (rate_limits.store: redis),
// the deployment's state that must hold across replicas, else the cache's
// second level (cache.redis). Keys go under that section's key_prefix
// followed by "resp:" ("sluice:resp:" when it sets none); one call is
// bounded by its timeout (default 100ms). Read at start, as cache.redis
// is: a reload does not move it.
//
// With the rate limits' Redis, the ids use the limits' client (clients):
// one connection per node for both, not two.
func responseIDsRedis(cfg *config.Config, clients *redisconn.Clients) *gateway.ResponseIDsRedis {
	var rd config.Redis
	var client rueidis.ClientOption
	switch {
	case cfg.RateLimits.Store == "redis" && len(cfg.RateLimits.Redis.Addrs) > 0:
		rd = cfg.RateLimits.Redis.Redis
		client = ratelimit.ClientOption(rd) // the same options: one client (clients) for both
	case len(cfg.Cache.Redis.Addrs) > 0:
		rd = cfg.Cache.Redis.Redis
		client = redisconn.Option(rd, "sluice-responses", false) // the cache's has client-side caching on
	default:
		return nil
	}
	out := &gateway.ResponseIDsRedis{Client: client, Clients: clients, Timeout: rd.Timeout.D()}
	if rd.KeyPrefix != "" {
		out.Prefix = rd.KeyPrefix + "resp:"
	}
	return out
}
