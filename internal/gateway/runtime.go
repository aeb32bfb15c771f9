package gateway

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// Runtime is an immutable snapshot of everything one config made, which
// the chain reads: pools, policies, the forwarder, limits and caches.
// internal/app builds it aside (app.Build) and a reload installs it with
// one atomic store (Gateway.Swap); requests already running keep the one
// they started with, but pick their backends from the newest pool of
// their model (Pool.successor).
type Runtime struct {
	Config    *config.Config
	Pools     map[string]*Pool
	Models    []string // config order, for /v1/models
	forwarder *proxy.Forwarder
	tenants   *tenants
	limiter   *ratelimit.Limiter // nil: no rate limits configured
	cache     cache.Level        // nil: response cache off
	flights   *flights           // nil: no coalescing
	memo      *cache.Memo        // nil: every body is parsed
	// only is the pool of a runtime that serves one model, nil otherwise
	// (pool).
	only *Pool
	// cacheMetrics count response buffers and abandoned captures; may be nil.
	cacheMetrics *cache.Metrics

	// ccValues holds the Cache-Control values made so far, by max-age in
	// seconds (cacheControl), so a hit does not format one each time.
	ccValues []atomic.Pointer[string]

	modelsOnce sync.Once // /v1/models body and ETag, rendered on first use
	modelsJSON []byte
	modelsETag string
}

// Parts are the stateful parts a Runtime is assembled from, built (and
// carried over reloads) by internal/app.
type Parts struct {
	Pools     []*Pool // in config order
	Forwarder *proxy.Forwarder
	Limiter   *ratelimit.Limiter // nil: no rate limits
	// Cache is the response cache (nil: off), with its parse memo and
	// metrics (either may be nil).
	Cache        cache.Level
	Memo         *cache.Memo
	CacheMetrics *cache.Metrics
	Flights      *Flights // nil: no coalescing
	// Tokens verifies bearer JWTs (auth.jwt); nil: JWTs off.
	Tokens *auth.Issuers
}

// NewRuntime assembles a Runtime for cfg from its parts; the caller-facing
// policies (tenants, client address, cache rules) are read from cfg.
func NewRuntime(cfg *config.Config, p Parts) *Runtime {
	var tokens tokenVerifier // nil, not a nil *auth.Issuers: JWTs off
	if p.Tokens != nil {
		tokens = p.Tokens
	}
	rt := &Runtime{Config: cfg, Pools: make(map[string]*Pool, len(p.Pools)), tenants: newTenants(cfg.Auth, tokens),
		forwarder: p.Forwarder, limiter: p.Limiter, cache: p.Cache, memo: p.Memo, cacheMetrics: p.CacheMetrics, flights: p.Flights}
	if p.Cache != nil {
		rt.ccValues = make([]atomic.Pointer[string], maxKeptMaxAge+1)
	}
	for _, pool := range p.Pools {
		rt.Pools[pool.Model] = pool
		rt.Models = append(rt.Models, pool.Model)
	}
	if len(rt.Pools) == 1 {
		for _, pool := range rt.Pools { // the map's, whichever of p.Pools won
			rt.only = pool
		}
	}
	return rt
}

// pool is Pools[model]. A runtime serving one model (flag mode's) compares
// the name instead: the map look-up costs every request ~0.13k
// instructions, the compare a few.
func (rt *Runtime) pool(model string) *Pool {
	if rt.only != nil {
		if model == rt.only.Model {
			return rt.only
		}
		return nil
	}
	return rt.Pools[model]
}

// Backends lists every backend of the runtime, for the health checker.
func (rt *Runtime) Backends() []*endpoint.Backend {
	var out []*endpoint.Backend
	for _, name := range rt.Models {
		out = append(out, rt.Pools[name].Backends...)
	}
	return out
}

// Kick wakes every queue, for capacity that grew without a request ending
// (a backend came back, a breaker closed).
func (rt *Runtime) Kick() {
	for _, p := range rt.Pools {
		if p.queue != nil {
			p.queue.Kick()
		}
	}
}

// Rest reports whether every queue is at rest (admission.Queue.Rest): a
// Kick would do nothing until one is sent work, which its QueueConfig.Wake
// then says. Every queue is asked, so each that rests will signal.
func (rt *Runtime) Rest() bool {
	rest := true
	for _, p := range rt.Pools {
		if p.queue != nil && !p.queue.Rest() {
			rest = false
		}
	}
	return rest
}

// Queues maps model to its queue, for metrics.
func (rt *Runtime) Queues() map[string]*admission.Queue {
	out := make(map[string]*admission.Queue, len(rt.Pools))
	for name, p := range rt.Pools {
		if p.queue != nil {
			out[name] = p.queue
		}
	}
	return out
}

// Retire closes this runtime's rate limiter (its Redis connection) and
// its forwarder's call workers (proxy.Forwarder.Close) unless next shares
// them; next nil: closes them.
func (rt *Runtime) Retire(next *Runtime) {
	if rt.limiter != nil && (next == nil || next.limiter != rt.limiter) {
		rt.limiter.Close()
	}
	if rt.forwarder != nil && (next == nil || next.forwarder != rt.forwarder) {
		rt.forwarder.Close()
	}
}

// Join waits, after Retire(next), for the goroutines of rt that next does
// not share and that Retire stopped without waiting: its forwarder's call
// workers (proxy.Forwarder.Wait). It returns ctx's cause (wrapped) when
// ctx ends first. No request needs to end first: a closed forwarder
// starts no worker, so the requests still running on rt run their first
// writes on their own stacks, and Join waits only for the writes already
// on a worker. (The rest a retirement releases is joined where it is
// closed: the rate limiter's Redis connections by Retire, the JWKS
// refreshes by app.Built.Retire; hedges and cache refreshes belong to
// the process' Background, kept across reloads.)
func (rt *Runtime) Join(ctx context.Context, next *Runtime) error {
	if rt.forwarder == nil || (next != nil && next.forwarder == rt.forwarder) {
		return nil
	}
	return rt.forwarder.Wait(ctx)
}

// CallWorkers is how many call workers rt's forwarder runs now.
func (rt *Runtime) CallWorkers() int {
	if rt.forwarder == nil {
		return 0
	}
	return rt.forwarder.CallWorkers()
}
