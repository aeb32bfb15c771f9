package app

import (
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Deps are the long-lived parts every runtime is built with.
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
	// Redis shares one client among the users of one Redis (the rate
	// limits' store across reloads, the Responses API's ids); nil: each
	// opens its own.
	Redis *redisconn.Clients
	// Background owns the calls that outlive a request's handler
	// (coalescing flights, stale-while-revalidate refreshes); shutdown
	// joins it. nil: the runtime keeps its own, which nobody joins.
	Background *gateway.Background
	Now        func() time.Time
	// Stalls sees this process's own stalls, so a backend's backlog bound
	// takes no evidence from them (endpoint.StallWatch); nil: none seen.
	Stalls *endpoint.StallWatch
	// QueueWork is every queue's admission.QueueConfig.Wake and Ejections
	// every backend's SignalEjections channel: what the loops that kick
	// the queues and log ejections sleep on while there is nothing for
	// them (whileBusy). Buffered; nil: no signal.
	QueueWork chan struct{}
	Ejections chan struct{}
	// AfterFunc, when set, replaces time.AfterFunc for the forwarder's
	// per-attempt timeouts (proxy.Options.AfterFunc); nil: real timers.
	AfterFunc func(time.Duration, func()) proxy.Timer
	Rand      routing.Rand
	// Rings counts prefix-affinity ring builds across reloads; nil: not
	// counted.
	Rings *routing.RingStats
	// Discovered is a model's backends found by its discovery sources
	// (internal/discovery), added to the config's static ones; nil: none.
	Discovered func(model string) []endpoint.Spec
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
	StageAuth       = "auth" // bearer JWT verifier and the issuer's key set
)

// BuildStages lists the build stages in order.
var BuildStages = []string{StageValidate, StagePools, StageBreakers, StageAdmission, StageRateLimits, StageCache, StageForwarder, StageAuth}

func (d *Deps) failAt(stage string) error {
	if d.FailAt == nil {
		return nil
	}
	if err := d.FailAt(stage); err != nil {
		return fmt.Errorf("build stage %s: %w", stage, err)
	}
	return nil
}

// Built is a runtime built aside from a config, with what the next build
// may take over from it (queues, the rate limiter, the coalescing flights)
// and the changes it makes, once installed, to the live state it shares
// with the runtime it replaces.
type Built struct {
	Runtime *gateway.Runtime
	queues  map[string]*poolQueue
	limits  *limits // nil: no rate limits
	flights *gateway.Flights
	// jwks are the issuers' key sets (auth.jwt's or auth.jwt.issuers[]'s
	// jwks_url), each kept across reloads that keep its settings; tokens
	// verifies bearer JWTs. Both nil when JWTs are off.
	jwks   []*auth.JWKS
	tokens *auth.Issuers
	// retries and hedges are the forwarder's budgets: the process keeps
	// one of each across rebuilds (retryBudgets).
	retries *proxy.Budget
	hedges  *proxy.HedgeBudget
	// handover are the changes this runtime makes to the live state it
	// takes over (reused backends' health policy, breakers and limits;
	// reused queues; the rate limiter's metrics). Build only records
	// them; Commit applies them all at once, just before the runtime is
	// swapped in — so a build that fails changes nothing.
	handover  []func()
	committed atomic.Bool
	// retiredTLS: its Commit retired TLS transports the runtime it
	// replaced used (a CA or certificate file changed): install closes
	// what their requests hand back once the drain's grace is over.
	retiredTLS bool
}

// model is one model's pool while it is being built.
type model struct {
	cfg      *config.Model
	policy   string
	slo      config.SLO
	picker   routing.Picker
	backends []*endpoint.Backend
	keys     map[string]bool // of backends' Specs: each server once
	queue    *poolQueue      // nil when admission is off
}

// build is a runtime in the making: what the stages have made so far.
type build struct {
	cfg       *config.Config
	deps      *Deps
	prev      *Built // the running runtime, only read; nil at start
	out       *Built
	models    []*model
	forwarder *proxy.Forwarder
	prevIdx   *prevIndex // prev's backends, indexed at first use (prevIndex)
}

// PolicyCheck accepts the names of the routing policies.
func PolicyCheck(name string) error {
	_, err := routing.New(name, nil, nil)
	return err
}

// Load reads and validates a config file, policy names included, so that
// Build need not validate it again: errors read FILE:LINE: key.path: problem.
func Load(path string) (*config.Config, error) { return config.LoadWith(path, PolicyCheck) }

// Build makes a runtime from cfg, aside: the running one (prev) is only
// read. Backends of prev with the same model and spec are reused, so their
// in-flight counts, health, latency and breaker windows survive a reload
// and in-flight streams are never dropped; so are the models' queues
// (with their waiters, new settings set on Commit) and an unchanged rate limiter (with
// its buckets). What the new runtime changes on those shared parts is
// handed over by Commit, never before: a build that fails at any stage
// leaves prev exactly as it was, and closes what it opened. A cfg that is
// not Checked is validated first (stage validate).
func Build(cfg *config.Config, deps Deps, prev *Built) (*Built, error) {
	if err := deps.failAt(StageValidate); err != nil {
		return nil, err
	}
	if !cfg.Checked() { // configs from Load are validated there, once
		if err := cfg.ValidateWith(PolicyCheck); err != nil {
			return nil, err
		}
	}
	b := &build{cfg: cfg, deps: &deps, prev: prev, out: &Built{queues: map[string]*poolQueue{}}}
	steps := []struct {
		stage string
		run   func(*build) error
	}{
		{StagePools, (*build).pools},
		{StageBreakers, (*build).breakers},
		{StageAdmission, (*build).admission},
		{StageRateLimits, (*build).rateLimits},
		{StageCache, (*build).cache},
		{StageForwarder, (*build).forward},
		{StageAuth, (*build).tokens},
	}
	for _, st := range steps {
		err := deps.failAt(st.stage)
		if err == nil {
			err = st.run(b)
		}
		if err != nil {
			b.discard()
			return nil, err
		}
	}
	return b.assemble(), nil
}

// assemble makes the gateway's runtime from the built parts.
func (b *build) assemble() *Built {
	cfg, out := b.cfg, b.out
	parts := gateway.Parts{Forwarder: b.forwarder, Flights: out.flights, Tokens: out.tokens}
	if out.limits != nil {
		parts.Limiter = out.limits.l
	}
	if cfg.Cache.Enabled {
		parts.Cache, parts.Memo, parts.CacheMetrics = b.deps.Cache, b.deps.CacheMemo, b.deps.CacheMetrics
	}
	for _, m := range b.models {
		pp := gateway.PoolParts{Model: m.cfg, Policy: m.policy, SLO: m.slo, Picker: m.picker,
			Backends: m.backends, Draining: b.draining(m), Now: b.deps.Now,
			LateStart: lateStart(cfg.Admission, m.slo)}
		if m.queue != nil {
			pp.Queue = m.queue.q
		}
		pool := gateway.NewPool(pp)
		if q := m.queue; q != nil {
			out.queues[m.cfg.Name] = q
			b.onQueue(q, pool)
		}
		parts.Pools = append(parts.Pools, pool)
	}
	out.Runtime = gateway.NewRuntime(cfg, parts)
	return out
}

// prevRuntime is the running runtime, nil at start.
func (b *build) prevRuntime() *gateway.Runtime {
	if b.prev == nil {
		return nil
	}
	return b.prev.Runtime
}

// index is the running runtime's backends, indexed (once per build).
func (b *build) index() *prevIndex {
	if b.prevIdx == nil {
		b.prevIdx = newPrevIndex(b.prevRuntime())
	}
	return b.prevIdx
}

// onShared records f for Commit when the backend is shared with the
// running runtime, else applies it at once (a new backend serves nothing
// yet).
func (b *build) onShared(be *endpoint.Backend, f func()) {
	if b.index().owns(be) {
		b.out.handover = append(b.out.handover, f)
		return
	}
	f()
}

// pools makes each model's backends, reused from prev when the spec is
// unchanged, and its picker.
func (b *build) pools() error {
	cfg := b.cfg
	hp := endpoint.HealthPolicy{
		MaxFails:        cfg.Health.MaxFails,
		FailTimeout:     cfg.Health.FailTimeout.D(),
		BusyPenalty:     cfg.Health.BusyPenalty.D(),
		MaxEjectionTime: cfg.Health.MaxEjectionTime.D(),
	}
	for i := range cfg.Models {
		mc := &cfg.Models[i]
		m := &model{cfg: mc, policy: config.PolicyFor(mc), slo: cfg.SLOFor(mc)}
		for j, bc := range mc.Backends {
			spec := endpoint.Spec{URL: bc.URL, Weight: bc.Weight, MaxConcurrency: bc.MaxConcurrency,
				APIKey: bc.APIKey, UpstreamModel: bc.UpstreamModel, PassClientAuth: bc.PassClientAuth, Engine: bc.Engine}.Normalized()
			if bc.TLS != nil {
				spec.TLS = fmt.Sprintf("models[%d].backends[%d].tls", i, j)
			}
			if err := b.addBackend(m, spec, hp); err != nil {
				return fmt.Errorf("models[%d].backends[%d].url: %w", i, j, err)
			}
		}
		if b.deps.Discovered != nil {
			for _, spec := range b.deps.Discovered(mc.Name) {
				if err := b.addBackend(m, spec.Normalized(), hp); err != nil {
					// A source checks its targets; one it let through is
					// left out, not allowed to fail the whole build.
					b.deps.Logger.Warn("discovery: backend left out", "model", mc.Name, "error", err.Error())
				}
			}
		}
		if err := b.picker(m); err != nil {
			return fmt.Errorf("models[%d].policy: %w", i, err)
		}
		b.models = append(b.models, m)
	}
	return nil
}

// picker gives m its routing policy: the running pool's, state and all,
// when the policy is the same and the pool has the same backends in the
// same order, else a new one. A new round robin starts at the first
// backend: made afresh at every reload (SIGHUP, a file change, a
// discovery update), the first backend got the next request after each,
// and a gateway reloaded more often than it served len(backends) requests
// sent them all there. A pool whose backends changed gets a new one: the
// position (or a smooth weighted's current weights, a prefix ring) means
// nothing over another list.
func (b *build) picker(m *model) error {
	if rt := b.prevRuntime(); rt != nil {
		if p := rt.Pools[m.cfg.Name]; p != nil && p.Policy == m.policy && slices.Equal(p.Backends, m.backends) {
			m.picker = p.Picker()
			return nil
		}
	}
	var err error
	if m.picker, err = routing.New(m.policy, b.deps.Rand, b.deps.Now); err != nil {
		return err
	}
	if b.deps.Rings != nil {
		routing.CountRings(m.picker, b.deps.Rings)
	}
	return nil
}

// addBackend adds spec's backend to m: prev's, when it serves the model
// with the same spec (its state carries over), else a new one, which
// slow-starts when it joins a pool that was already serving (serving),
// unless it is a server of that pool listed with other settings
// (respecified: a weight or max_concurrency edited in a reload; its caches
// are warm, and a slow start would give it a tenth of its new weight for
// slow_start). A spec already in m (static and discovered alike) is added
// once.
func (b *build) addBackend(m *model, spec endpoint.Spec, hp endpoint.HealthPolicy) error {
	key := spec.Key()
	if m.keys[key] {
		return nil
	}
	be := b.index().reuse(m.cfg.Name, spec)
	if be == nil {
		var err error
		if be, err = endpoint.New(spec, hp); err != nil {
			return err
		}
		if b.serving(m.cfg.Name) && !b.index().respecified(m.cfg.Name, spec) {
			be.SlowStart(config.SlowStartFor(m.cfg), b.deps.Now)
		}
	}
	be.SetStallWatch(b.deps.Stalls)
	be.SignalEjections(b.deps.Ejections)
	b.onShared(be, func() { be.SetHealthPolicy(hp) })
	m.backends = append(m.backends, be)
	if m.keys == nil {
		m.keys = map[string]bool{}
	}
	m.keys[key] = true
	return nil
}

// serving reports whether the running runtime has backends for model: a
// backend joining such a pool slow-starts; the first ones of a pool
// (at start, or found by discovery into an empty pool) have nobody to
// share with and start at full share, as Envoy's slow start skips a
// cluster's first hosts.
func (b *build) serving(model string) bool {
	rt := b.prevRuntime()
	return rt != nil && rt.Pools[model] != nil && len(rt.Pools[model].Backends) > 0
}

// draining are the backends of m's running pool (or still draining out of
// it) that m no longer has and that still have requests in flight.
func (b *build) draining(m *model) []*endpoint.Backend {
	rt := b.prevRuntime()
	if rt == nil || rt.Pools[m.cfg.Name] == nil {
		return nil
	}
	p := rt.Pools[m.cfg.Name]
	var out []*endpoint.Backend
	kept := make(map[*endpoint.Backend]bool, len(m.backends))
	for _, be := range m.backends {
		kept[be] = true
	}
	for _, be := range append(slices.Clone(p.Backends), p.Draining...) {
		if be.Inflight() > 0 && !kept[be] {
			out = append(out, be)
		}
	}
	return out
}

// forward makes the forwarder: the upstream transport, timeouts, retries
// and their budget.
func (b *build) forward() error {
	cfg := b.cfg
	var owner proxy.Owner // a nil *gateway.Background must stay a nil Owner
	if b.deps.Background != nil {
		owner = b.deps.Background
	}
	router, err := b.upstreamRouter()
	if err != nil {
		return err
	}
	b.out.handover = append(b.out.handover, func() { b.out.retiredTLS = b.deps.Transport.SetCurrent(router) })
	b.out.retries, b.out.hedges = b.retryBudgets()
	b.forwarder = proxy.NewForwarder(proxy.Options{
		Transport: router,
		Timeouts: proxy.Timeouts{
			FirstByte:  cfg.Timeouts.FirstByte.D(),
			StreamIdle: cfg.Timeouts.StreamIdle.D(),
			Total:      cfg.Timeouts.Total.D(),
			// A follow-up's probe is a small read of a backend's memory:
			// the time a backend is given to accept a connection is ample
			// for its answer, and first_byte is sized for prefill.
			Probe: cfg.Timeouts.Connect.D(),
		},
		Attempts:      cfg.Retry.Attempts,
		Budget:        b.out.retries,
		Hedges:        b.out.hedges,
		Now:           b.deps.Now,
		AfterFunc:     b.deps.AfterFunc,
		ExposeBackend: cfg.ExposeBackend,
		Owner:         owner,
		RelayBuffers:  b.deps.Transport.RelayBuffers(),
		Workers:       b.deps.Transport.Workers(),
	})
	return nil
}

// retryBudgets are the forwarder's retry and hedge budgets: the running
// runtime's, their settings changed on Commit, so a reload or a discovery
// rebuild neither hands out a fresh retry allowance (before: each rebuild
// made a budget holding min_per_second retries, whatever the old one had
// left) nor forgets the hedges in flight. New ones at start.
func (b *build) retryBudgets() (*proxy.Budget, *proxy.HedgeBudget) {
	r := b.cfg.Retry
	if b.prev == nil || b.prev.retries == nil {
		return proxy.NewBudget(r.BudgetRatio, r.MinPerSecond), proxy.NewHedgeBudget(r.HedgeBudgetRatio, r.HedgeMinInFlight)
	}
	budget, hedges := b.prev.retries, b.prev.hedges
	b.out.handover = append(b.out.handover, func() {
		budget.Set(r.BudgetRatio, r.MinPerSecond)
		hedges.Set(r.HedgeBudgetRatio, r.HedgeMinInFlight)
	})
	return budget, hedges
}

// cache takes the process's response cache and the coalescing flights,
// kept across reloads: a request arriving just after one still joins the
// identical call in flight.
func (b *build) cache() error {
	if !b.cfg.Cache.Enabled || !b.cfg.Cache.Coalesce {
		return nil
	}
	if b.prev != nil && b.prev.flights != nil {
		b.out.flights = b.prev.flights
	} else {
		b.out.flights = gateway.NewFlights(b.deps.CacheMetrics, b.deps.Background)
	}
	return nil
}

// Commit hands the live state over to the built runtime: it applies, once
// and together, the changes Build recorded for the parts it shares with
// the runtime it replaces. Call it just before Gateway.Swap (or New).
func (bt *Built) Commit() {
	if !bt.committed.CompareAndSwap(false, true) {
		return
	}
	for _, f := range bt.handover {
		f()
	}
	bt.handover = nil
}

// Retire releases what this runtime holds that next does not share (a
// replaced rate limiter's Redis connection); next nil: everything.
func (bt *Built) Retire(next *Built) {
	var n *gateway.Runtime
	if next != nil {
		n = next.Runtime
	}
	bt.Runtime.Retire(n)
	bt.closeJWKS(next)
	bt.openQueues(next)
}

// openQueues lets through at once the waiters of each queue of bt whose
// model next still serves without one (admission turned off by the
// reload): the requests arriving now skip admission, and those queued
// before would otherwise wait for the old queue's tickets to come back
// (admission.Queue.Open). Run after the swap, so no request reaches the
// old queue after it but through the old runtime, and those are granted
// at once too.
func (bt *Built) openQueues(next *Built) {
	if next == nil {
		return // shutdown: the drain decides the waiters' fate
	}
	for name, q := range bt.queues {
		if next.queues[name] == nil && next.Runtime.Pools[name] != nil {
			q.q.Open()
		}
	}
}

// discard closes what a failed build opened and prev does not share.
func (b *build) discard() {
	if l := b.out.limits; l != nil && (b.prev == nil || b.prev.limits != l) {
		l.l.Close()
	}
	b.out.closeJWKS(b.prev)
}
