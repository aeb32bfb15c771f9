package gateway

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Runtime is an immutable snapshot of everything built from one config. A
// reload builds a new Runtime and swaps it in atomically; requests already
// running keep the one they started with.
type Runtime struct {
	Config    *config.Config
	Pools     map[string]*Pool
	Models    []string // config order, for /v1/models
	forwarder *proxy.Forwarder
	tenants   *tenants
	limits    *limits     // nil: no rate limits configured
	cache     cache.Level // nil: response cache off
	flights   *flights    // nil: no coalescing
	memo      *cache.Memo // nil: every body is parsed
	// cacheMetrics count response buffers and abandoned captures; may be nil.
	cacheMetrics *cache.Metrics

	modelsOnce sync.Once // /v1/models body and ETag, rendered on first use
	modelsJSON []byte
	modelsETag string
}

// Deps are the long-lived parts a Runtime is built with.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer // for stores' own metrics; may be nil
	// Cache is the process's response cache (it outlives reloads); nil = off.
	Cache        cache.Level
	CacheMetrics *cache.Metrics // may be nil
	// CacheMemo remembers the parse and cache digest of repeated
	// cacheable bodies; nil: computed every time.
	CacheMemo *cache.Memo
	Transport *proxy.Transport
	Now       func() time.Time
	Rand      routing.Rand
}

// Build makes a Runtime from cfg. Backends of prev with the same model and
// spec are reused, so their in-flight counts, health and latency survive a
// reload and in-flight streams are never dropped.
func Build(cfg *config.Config, deps Deps, prev *Runtime) (*Runtime, error) {
	if err := cfg.ValidateWith(func(name string) error {
		_, err := routing.New(name, deps.Rand, deps.Now)
		return err
	}); err != nil {
		return nil, err
	}
	hp := endpoint.HealthPolicy{
		MaxFails:    cfg.Health.MaxFails,
		FailTimeout: cfg.Health.FailTimeout.D(),
		BusyPenalty: cfg.Health.BusyPenalty.D(),
	}
	rt := &Runtime{Config: cfg, Pools: make(map[string]*Pool, len(cfg.Models)), tenants: newTenants(cfg.Auth)}
	for i, m := range cfg.Models {
		policy := m.Policy
		if policy == "" {
			policy = "p2c_ewma"
		}
		picker, err := routing.New(policy, deps.Rand, deps.Now)
		if err != nil {
			return nil, fmt.Errorf("models[%d].policy: %w", i, err)
		}
		pool := &Pool{Model: m.Name, Policy: policy, Fallbacks: m.Fallbacks, SLO: cfg.SLOFor(&cfg.Models[i]),
			cacheModel: cacheModel(m.Name, m.Backends), picker: picker, now: deps.Now}
		var group *breaker.Group
		if cfg.Breaker.Enabled {
			group = breaker.NewGroup(cfg.Breaker.MaxEjectedRatio)
		}
		for j, bc := range m.Backends {
			spec := endpoint.Spec{URL: bc.URL, Weight: bc.Weight, MaxConcurrency: bc.MaxConcurrency,
				APIKey: bc.APIKey, UpstreamModel: bc.UpstreamModel, PassClientAuth: bc.PassClientAuth}
			b := prev.reuse(m.Name, spec)
			if b != nil {
				b.SetHealthPolicy(hp)
			} else if b, err = endpoint.New(spec, hp); err != nil {
				return nil, fmt.Errorf("models[%d].backends[%d].url: %w", i, j, err)
			}
			attachBreaker(b, cfg.Breaker, group, deps.Logger, m.Name)
			switch {
			case !cfg.Admission.Enabled:
				b.SetLimiter(nil)
			case b.Limiter() == nil || (prev != nil && (prev.Config.Admission.Adaptive != cfg.Admission.Adaptive ||
				prev.Pools[m.Name] == nil || prev.Pools[m.Name].SLO != pool.SLO)):
				b.SetLimiter(newAdaptiveLimit(cfg.Admission.Adaptive, pool.SLO))
			}
			pool.Backends = append(pool.Backends, b)
		}
		if cfg.Admission.Enabled {
			pool.queue = queueFor(pool, cfg.Admission, prev, deps.Now)
		}
		rt.Pools[m.Name] = pool
		rt.Models = append(rt.Models, m.Name)
	}
	lim, err := openLimits(cfg.RateLimits, prev, deps.Registry, deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("rate_limits: %w", err)
	}
	rt.limits = lim
	if cfg.Cache.Enabled {
		rt.cache, rt.memo, rt.cacheMetrics = deps.Cache, deps.CacheMemo, deps.CacheMetrics
		if cfg.Cache.Coalesce {
			// Kept across reloads: a request arriving just after one
			// still joins the identical call in flight.
			if prev != nil && prev.flights != nil {
				rt.flights = prev.flights
			} else {
				rt.flights = newFlights(deps.CacheMetrics)
			}
		}
	}
	rt.forwarder = proxy.NewForwarder(proxy.Options{
		Transport: deps.Transport.For(cfg.Timeouts.Connect.D()),
		Timeouts: proxy.Timeouts{
			FirstByte:  cfg.Timeouts.FirstByte.D(),
			StreamIdle: cfg.Timeouts.StreamIdle.D(),
			Total:      cfg.Timeouts.Total.D(),
		},
		Attempts:      cfg.Retry.Attempts,
		Budget:        proxy.NewBudget(cfg.Retry.BudgetRatio, cfg.Retry.MinPerSecond),
		Hedges:        proxy.NewHedgeBudget(cfg.Retry.HedgeBudgetRatio, cfg.Retry.HedgeMinInFlight),
		Now:           deps.Now,
		ExposeBackend: cfg.ExposeBackend,
	})
	return rt, nil
}

func (rt *Runtime) reuse(model string, spec endpoint.Spec) *endpoint.Backend {
	if rt == nil {
		return nil
	}
	p := rt.Pools[model]
	if p == nil {
		return nil
	}
	for _, b := range p.Backends {
		if b.Spec() == spec {
			return b
		}
	}
	return nil
}

// Backends lists every backend of the runtime, for the health checker.
func (rt *Runtime) Backends() []*endpoint.Backend {
	var out []*endpoint.Backend
	for _, name := range rt.Models {
		out = append(out, rt.Pools[name].Backends...)
	}
	return out
}

// attachBreaker gives b a breaker with the configured settings, keeping its
// current one (and its window) when the settings did not change, and makes
// it a member of the pool's group for the ejection cap.
func attachBreaker(b *endpoint.Backend, c config.Breaker, group *breaker.Group, log *slog.Logger, model string) {
	if !c.Enabled {
		b.SetBreaker(nil)
		return
	}
	s := breaker.Settings{
		Window: c.Window.D(), MinRequests: c.MinRequests, FailureRatio: c.FailureRatio,
		SlowCall: c.SlowCall.D(), SlowRatio: c.SlowRatio, OpenFor: c.OpenFor.D(),
		MaxOpenFor: c.MaxOpenFor.D(), HalfOpenProbes: c.HalfOpenProbes,
	}
	br := b.Breaker()
	if br == nil || !sameBreakerSettings(br.Settings(), s) {
		name := b.Name()
		s.OnStateChange = func(from, to breaker.State) {
			if log != nil {
				log.Warn("circuit breaker state change", "model", model, "backend", name, "from", from.String(), "to", to.String())
			}
		}
		br = breaker.New(s)
		b.SetBreaker(br)
	}
	group.Add(br)
}

func sameBreakerSettings(a, b breaker.Settings) bool {
	return a.Window == b.Window && a.MinRequests == b.MinRequests && a.FailureRatio == b.FailureRatio &&
		a.SlowCall == b.SlowCall && a.SlowRatio == b.SlowRatio && a.OpenFor == b.OpenFor &&
		a.MaxOpenFor == b.MaxOpenFor && a.HalfOpenProbes == b.HalfOpenProbes
}

// Kick wakes every queue, for capacity that grew without a request ending
// (a backend came back, a breaker closed).
func (rt *Runtime) Kick() {
	for _, p := range rt.Pools {
		if p.queue != nil {
			p.queue.q.Kick()
		}
	}
}

// Queues maps model to its queue, for metrics.
func (rt *Runtime) Queues() map[string]*admission.Queue {
	out := make(map[string]*admission.Queue, len(rt.Pools))
	for name, p := range rt.Pools {
		if p.queue != nil {
			out[name] = p.queue.q
		}
	}
	return out
}

// Retire releases what this runtime holds that the next one does not share
// (a replaced rate limiter's Redis connection).
func (rt *Runtime) Retire(next *Runtime) {
	if rt.limits != nil && (next == nil || next.limits != rt.limits) {
		rt.limits.l.Close()
	}
}
