package gateway

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

	// handover are the changes this runtime makes to the live state it
	// takes over from the one it replaces (reused backends' health policy,
	// breakers and limits; reused queues; the rate limiter's metrics).
	// Build only records them; commit applies them all at once, when the
	// runtime is installed (New, Swap) — so a build that fails changes
	// nothing the running runtime serves with.
	handover  []func()
	committed atomic.Bool
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
	// FailAt, when set, is asked at the start of each build stage
	// (BuildStages) and fails the build with its error: the test seam that
	// shows a failed reload changes nothing.
	FailAt func(stage string) error
}

// The stages of a build, in order; FailAt is asked at each.
const (
	StageValidate   = "validate"
	StagePools      = "pools"     // backends: reused or new, health policy
	StageBreakers   = "breakers"  // per-backend breakers and the pool's ejection cap
	StageAdmission  = "admission" // adaptive limits and the fair queues
	StageRateLimits = "rate_limits"
	StageCache      = "cache"
	StageForwarder  = "forwarder"
)

// BuildStages lists the build stages in order.
var BuildStages = []string{StageValidate, StagePools, StageBreakers, StageAdmission, StageRateLimits, StageCache, StageForwarder}

func (d *Deps) failAt(stage string) error {
	if d.FailAt == nil {
		return nil
	}
	if err := d.FailAt(stage); err != nil {
		return fmt.Errorf("build stage %s: %w", stage, err)
	}
	return nil
}

// Build makes a Runtime from cfg, aside: the running runtime (prev) is
// only read. Backends of prev with the same model and spec are reused, so
// their in-flight counts, health, latency and breaker windows survive a
// reload and in-flight streams are never dropped; so are queues whose
// settings did not change (with their waiters) and an unchanged rate
// limiter (with its buckets). What the new runtime changes on those shared
// parts is handed over when it is installed (commit), never before: a
// build that fails at any stage leaves prev exactly as it was, and closes
// what it opened.
func Build(cfg *config.Config, deps Deps, prev *Runtime) (*Runtime, error) {
	if err := deps.failAt(StageValidate); err != nil {
		return nil, err
	}
	if err := cfg.ValidateWith(func(name string) error {
		_, err := routing.New(name, deps.Rand, deps.Now)
		return err
	}); err != nil {
		return nil, err
	}
	rt := &Runtime{Config: cfg, Pools: make(map[string]*Pool, len(cfg.Models)), tenants: newTenants(cfg.Auth)}
	steps := []struct {
		stage string
		build func(*Runtime, *config.Config, *Deps, *Runtime) error
	}{
		{StagePools, buildPools},
		{StageBreakers, buildBreakers},
		{StageAdmission, buildAdmission},
		{StageRateLimits, buildRateLimits},
		{StageCache, buildCache},
		{StageForwarder, buildForwarder},
	}
	for _, st := range steps {
		err := deps.failAt(st.stage)
		if err == nil {
			err = st.build(rt, cfg, &deps, prev)
		}
		if err != nil {
			rt.discard(prev)
			return nil, err
		}
	}
	return rt, nil
}

// onShared records f for commit when b is shared with the running runtime,
// else applies it at once (a new backend serves nothing yet).
func (rt *Runtime) onShared(b *endpoint.Backend, prev *Runtime, f func()) {
	if prev.owns(b) {
		rt.handover = append(rt.handover, f)
		return
	}
	f()
}

// buildPools makes each model's pool: its picker and its backends, reused
// from prev when the spec is unchanged.
func buildPools(rt *Runtime, cfg *config.Config, deps *Deps, prev *Runtime) error {
	hp := endpoint.HealthPolicy{
		MaxFails:    cfg.Health.MaxFails,
		FailTimeout: cfg.Health.FailTimeout.D(),
		BusyPenalty: cfg.Health.BusyPenalty.D(),
	}
	for i, m := range cfg.Models {
		policy := m.Policy
		if policy == "" {
			policy = "p2c_ewma"
		}
		picker, err := routing.New(policy, deps.Rand, deps.Now)
		if err != nil {
			return fmt.Errorf("models[%d].policy: %w", i, err)
		}
		pool := &Pool{Model: m.Name, Policy: policy, Fallbacks: m.Fallbacks, SLO: cfg.SLOFor(&cfg.Models[i]),
			cacheModel: cacheModel(m.Name, m.Backends), picker: picker, now: deps.Now}
		for j, bc := range m.Backends {
			spec := endpoint.Spec{URL: bc.URL, Weight: bc.Weight, MaxConcurrency: bc.MaxConcurrency,
				APIKey: bc.APIKey, UpstreamModel: bc.UpstreamModel, PassClientAuth: bc.PassClientAuth}.Normalized()
			b := prev.reuse(m.Name, spec)
			if b == nil {
				if b, err = endpoint.New(spec, hp); err != nil {
					return fmt.Errorf("models[%d].backends[%d].url: %w", i, j, err)
				}
			}
			rt.onShared(b, prev, func() { b.SetHealthPolicy(hp) })
			pool.Backends = append(pool.Backends, b)
		}
		rt.Pools[m.Name] = pool
		rt.Models = append(rt.Models, m.Name)
	}
	return nil
}

// buildBreakers gives every backend its breaker (kept, with its window,
// when the settings did not change) in its pool's ejection group.
func buildBreakers(rt *Runtime, cfg *config.Config, deps *Deps, prev *Runtime) error {
	for _, name := range rt.Models {
		var group *breaker.Group
		if cfg.Breaker.Enabled {
			group = breaker.NewGroup(cfg.Breaker.MaxEjectedRatio)
		}
		for _, b := range rt.Pools[name].Backends {
			rt.onShared(b, prev, attachBreaker(b, cfg.Breaker, group, deps.Logger, name))
		}
	}
	return nil
}

// buildAdmission gives every backend its adaptive limit (kept, with what
// it learned, unless the settings or the pool's objective changed) and
// every pool its fair queue (kept, with its waiters, when unchanged).
func buildAdmission(rt *Runtime, cfg *config.Config, deps *Deps, prev *Runtime) error {
	for _, name := range rt.Models {
		pool := rt.Pools[name]
		for _, b := range pool.Backends {
			switch {
			case !cfg.Admission.Enabled:
				rt.onShared(b, prev, func() { b.SetLimiter(nil) })
			case b.Limiter() == nil || (prev != nil && (prev.Config.Admission.Adaptive != cfg.Admission.Adaptive ||
				prev.Pools[name] == nil || prev.Pools[name].SLO != pool.SLO)):
				l := newAdaptiveLimit(cfg.Admission.Adaptive, pool.SLO)
				rt.onShared(b, prev, func() { b.SetLimiter(l) })
			}
		}
		if cfg.Admission.Enabled {
			pool.queue = rt.queueFor(pool, cfg.Admission, prev, deps.Now)
		}
	}
	return nil
}

func buildRateLimits(rt *Runtime, cfg *config.Config, deps *Deps, prev *Runtime) error {
	lim, err := openLimits(cfg.RateLimits, prev, deps.Registry, deps.Logger)
	if err != nil {
		return fmt.Errorf("rate_limits: %w", err)
	}
	rt.limits = lim
	if lim != nil && (prev == nil || prev.limits != lim) {
		// The new limiter's metrics replace the old one's (same names).
		rt.handover = append(rt.handover, func() {
			if prev != nil && prev.limits != nil {
				prev.limits.reg.unregisterAll()
			}
			lim.reg.registerStaged(deps.Logger)
		})
	}
	return nil
}

func buildCache(rt *Runtime, cfg *config.Config, deps *Deps, prev *Runtime) error {
	if !cfg.Cache.Enabled {
		return nil
	}
	rt.cache, rt.memo, rt.cacheMetrics = deps.Cache, deps.CacheMemo, deps.CacheMetrics
	if cfg.Cache.Coalesce {
		// Kept across reloads: a request arriving just after one still
		// joins the identical call in flight.
		if prev != nil && prev.flights != nil {
			rt.flights = prev.flights
		} else {
			rt.flights = newFlights(deps.CacheMetrics)
		}
	}
	return nil
}

func buildForwarder(rt *Runtime, cfg *config.Config, deps *Deps, _ *Runtime) error {
	rt.forwarder = proxy.NewForwarder(proxy.Options{
		Transport: deps.Transport.For(cfg.Timeouts.Connect.D()),
		Timeouts: proxy.Timeouts{
			FirstByte:  cfg.Timeouts.FirstByte.D(),
			StreamIdle: cfg.Timeouts.StreamIdle.D(),
			Total:      cfg.Timeouts.Total.D(),
		},
		Attempts:      cfg.Retry.Attempts,
		Budget:        proxy.NewBudget(cfg.Retry.BudgetRatio, cfg.Retry.MinPerSecond),
		Now:           deps.Now,
		ExposeBackend: cfg.ExposeBackend,
	})
	return nil
}

// commit hands the live state over to rt: it applies, once and together,
// the changes Build recorded for the parts rt shares with the runtime it
// replaces. New and Swap call it just before rt serves.
func (rt *Runtime) commit() {
	if !rt.committed.CompareAndSwap(false, true) {
		return
	}
	for _, f := range rt.handover {
		f()
	}
	rt.handover = nil
}

// discard closes what a failed build opened and prev does not share.
func (rt *Runtime) discard(prev *Runtime) {
	if rt.limits != nil && (prev == nil || prev.limits != rt.limits) {
		rt.limits.l.Close()
	}
}

// owns reports whether b serves in rt.
func (rt *Runtime) owns(b *endpoint.Backend) bool {
	if rt == nil {
		return false
	}
	for _, p := range rt.Pools {
		for _, x := range p.Backends {
			if x == b {
				return true
			}
		}
	}
	return false
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

// attachBreaker returns the change that gives b a breaker with the
// configured settings — its current one (and its window) when the
// settings did not change — as a member of the pool's group for the
// ejection cap.
func attachBreaker(b *endpoint.Backend, c config.Breaker, group *breaker.Group, log *slog.Logger, model string) func() {
	if !c.Enabled {
		return func() { b.SetBreaker(nil) }
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
	}
	return func() {
		b.SetBreaker(br)
		group.Add(br)
	}
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
