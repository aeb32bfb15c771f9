package app

import (
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
// bounded by its timeout (default 100ms). Read at start, as cache.redis
// is: a reload does not move it.
//
// The ids use the client clients holds for that Redis, the one the rate
// limits and the cache's second level use there too: one connection set
// per node for all three, not one each.
func responseIDsRedis(cfg *config.Config, clients *redisconn.Clients) *gateway.ResponseIDsRedis {
	var rd config.Redis
	switch {
	case cfg.RateLimits.Store == config.RateLimitStoreRedis && len(cfg.RateLimits.Redis.Addrs) > 0:
		rd = cfg.RateLimits.Redis.Redis
	case len(cfg.Cache.Redis.Addrs) > 0:
		rd = cfg.Cache.Redis.Redis
	default:
		return nil
	}
	out := &gateway.ResponseIDsRedis{Client: redisconn.Option(rd), Clients: clients, Timeout: rd.Timeout.D()}
	if rd.KeyPrefix != "" {
		out.Prefix = rd.KeyPrefix + "resp:"
	}
	return out
}
