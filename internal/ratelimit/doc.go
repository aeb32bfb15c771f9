// Package ratelimit limits requests and tokens per API key, tenant, client
// IP and globally, with nginx limit_req semantics, in one process or across
// gateway replicas through Redis.
//
// Every limit is a GCRA bucket (gcra.go): one number per key, the time the
// bucket drains to idle. GCRA admits exactly Rate per second plus a burst of
// Burst+1 at once, in every window wherever it starts (no fixed-window
// edge where twice the limit passes), and with nginx's delay/nodelay it
// reproduces limit_req request for request.
//
// Layers, from the bottom:
//
//   - Store keeps buckets: LocalStore in process (the default), RedisStore
//     in Redis or a Redis Cluster (one EVALSHA of gcra.lua per bucket,
//     pipelined per request, judged on the Redis server's clock so replicas
//     agree), FailoverStore around Redis for when it is down (fail-open at
//     each replica's share, or fail-closed).
//   - Limiter is what the gateway calls once per request: Check takes a
//     request and the estimated tokens from every applicable limit,
//     all-or-nothing; Result.Reconcile settles the tokens once usage is
//     known; Result.WriteHeaders writes OpenAI's x-ratelimit-* headers and
//     Retry-After.
//   - Open builds a Limiter from the rate_limits section (config.RateLimits;
//     the Limit value and its nginx syntax are internal/rate).
//
// Time is always passed in (now time.Time), as in golang.org/x/time/rate's
// AllowN; the Redis store uses it only with RedisOptions.CallerClock.
package ratelimit
