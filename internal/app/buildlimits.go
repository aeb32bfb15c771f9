package app

import (
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// The build stages that make the protections: breakers, admission (adaptive
// limits and fair queues) and rate limits.

// breakers gives every backend its breaker (kept, with its window, when
// the settings did not change) in its pool's ejection group.
func (b *build) breakers() error {
	for _, m := range b.models {
		var group *breaker.Group
		if b.cfg.Breaker.Enabled {
			group = breaker.NewGroup(b.cfg.Breaker.MaxEjectedRatio)
		}
		for _, be := range m.backends {
			b.onShared(be, attachBreaker(be, b.cfg.Breaker, group, b.deps.Logger, m.cfg.Name))
		}
	}
	return nil
}

// attachBreaker returns the change that gives be a breaker with the
// configured settings — its current one (and its window) when the
// settings did not change — as a member of the pool's group for the
// ejection cap.
func attachBreaker(be *endpoint.Backend, c config.Breaker, group *breaker.Group, log *slog.Logger, model string) func() {
	if !c.Enabled {
		return func() { be.SetBreaker(nil) }
	}
	s := breaker.Settings{
		Window: c.Window.D(), MinRequests: c.MinRequests, FailureRatio: c.FailureRatio,
		SlowCall: c.SlowCall.D(), SlowRatio: c.SlowRatio, OpenFor: c.OpenFor.D(),
		MaxOpenFor: c.MaxOpenFor.D(), HalfOpenProbes: c.HalfOpenProbes,
	}
	br := be.Breaker()
	if br == nil || !sameBreakerSettings(br.Settings(), s) {
		name := be.Name()
		s.OnStateChange = func(from, to breaker.State) {
			if log != nil {
				log.Warn("circuit breaker state change", "model", model, "backend", name, "from", from.String(), "to", to.String())
			}
		}
		br = breaker.New(s)
	}
	return func() {
		be.SetBreaker(br)
		group.Add(br)
	}
}

func sameBreakerSettings(a, b breaker.Settings) bool {
	return a.Window == b.Window && a.MinRequests == b.MinRequests && a.FailureRatio == b.FailureRatio &&
		a.SlowCall == b.SlowCall && a.SlowRatio == b.SlowRatio && a.OpenFor == b.OpenFor &&
		a.MaxOpenFor == b.MaxOpenFor && a.HalfOpenProbes == b.HalfOpenProbes
}

// admission gives every backend its adaptive limit (kept, with what it
// learned, unless the settings or the pool's objective changed) and every
// pool its fair queue (kept, with its waiters, when unchanged).
func (b *build) admission() error {
	a := b.cfg.Admission
	prev := b.prevRuntime()
	for _, m := range b.models {
		for _, be := range m.backends {
			switch {
			case !a.Enabled:
				b.onShared(be, func() { be.SetLimiter(nil) })
			case be.Limiter() == nil || (prev != nil && (prev.Config.Admission.Adaptive != a.Adaptive ||
				prev.Pools[m.cfg.Name] == nil || prev.Pools[m.cfg.Name].SLO != m.slo)):
				l := newAdaptiveLimit(a.Adaptive, m.slo, b.deps.Now)
				b.onShared(be, func() { be.SetLimiter(l) })
			}
		}
		if a.Enabled {
			m.queue = b.queueFor(m)
		}
	}
	return nil
}

// poolQueue is a model's fair queue. It outlives config reloads (waiters
// stay queued in their order, tickets stay counted), so the pool it
// measures capacity on is swapped in behind a pointer, and a reload that
// changes the admission settings or the pool's objective sets them on the
// running queue (admission.Queue.SetConfig) on Commit.
type poolQueue struct {
	q    *admission.Queue
	pool atomic.Pointer[gateway.Pool]
}

// queueFor returns prev's queue for m, to be set to this config on
// Commit (onQueue), else a new one. A new queue beside the old one knew
// neither its waiters nor its tickets: it granted later arrivals at once,
// ahead of them (they lost the race for the backend's slot and were
// refused 503 after seconds queued), and its bounds counted none of them.
func (b *build) queueFor(m *model) *poolQueue {
	cfg := queueConfig(b.cfg.Admission, m, b.deps.QueueWork)
	if b.prev != nil {
		if old := b.prev.queues[m.cfg.Name]; old != nil {
			b.out.handover = append(b.out.handover, func() { old.q.SetConfig(cfg) })
			return old
		}
	}
	pq := &poolQueue{}
	cfg.KnownCapacity = func() int { return pq.pool.Load().KnownCapacity() }
	cfg.SpareCapacity = func() int { return pq.pool.Load().SpareCapacity() }
	cfg.ReportedCapacity = func(need float64) (int, bool) { return pq.pool.Load().ReportedCapacity(need) }
	cfg.PrefillCapacity = func(prompt float64, left time.Duration) admission.PrefillFit {
		return pq.pool.Load().PrefillCapacity(prompt, left)
	}
	pq.q = admission.NewQueue(cfg, func() int { return pq.pool.Load().Capacity() }, b.deps.Now)
	return pq
}

// queueConfig is model m's queue settings under a.
func queueConfig(a config.Admission, m *model, wake chan<- struct{}) admission.QueueConfig {
	var targets [admission.MaxClass + 1]time.Duration
	for c := range targets {
		targets[c] = delayTarget(a, m.slo, admission.Class(c))
	}
	return admission.QueueConfig{
		Name: m.cfg.Name, Fair: true, MaxQueued: a.MaxQueued, MaxQueuedPerTenant: a.MaxQueuedPerTenant,
		MaxQueuedCost: a.MaxQueuedTokens, MinShare: a.BatchMinShare,
		// No grace: a waiter that cannot start before its deadline is
		// refused, never started late (its answer would miss the SLO and
		// still use the pool).
		Targets:      targets,
		SpareReserve: a.SpareReserve,
		// A cold burst against a fast backend is not refused on the
		// prior's guess: the first completion measures the real rate.
		QueueUnmeasured: true,
		ShortFirst:      shortFirst(a, m.slo),
		RampWindow:      time.Duration(a.TenantRamp),
		Wake:            wake,
	}
}

// onQueue points q at the pool it serves: at once for a new queue, on
// Commit for one taken over with its waiters.
func (b *build) onQueue(q *poolQueue, pool *gateway.Pool) {
	if b.prev == nil || b.prev.queues[pool.Model] != q {
		q.pool.Store(pool)
		return
	}
	b.out.handover = append(b.out.handover, func() {
		q.pool.Store(pool)
		q.q.Kick() // capacity may have grown
	})
}

// delayTarget is a class's controlled-delay target: admission.delay_target
// for interactive when set (scaled for the batch class by the ratio of
// their objectives), else a quarter of the class's objective. A quarter
// leaves the rest of the objective to the backend's own time to first token
// and its tail, while keeping enough queued to bridge the gaps of bursty
// arrivals so the pool never idles while requests are refused.
func delayTarget(a config.Admission, slo config.SLO, c admission.Class) time.Duration {
	objective := slo.Interactive
	if c != admission.Interactive {
		objective = slo.Batch
	}
	if t := a.DelayTarget.D(); t > 0 {
		return min(time.Duration(float64(t)*float64(objective)/float64(slo.Interactive)), objective)
	}
	return objective / 4
}

// lateStart is the time to first token past which a backend's late start
// takes its reported room away (gateway.Pool.LateStart): the interactive
// class's delay target, the longest the queue makes such a request wait.
func lateStart(a config.Admission, slo config.SLO) time.Duration {
	return delayTarget(a, slo, admission.Interactive)
}

// shortFirst is how long a waiter may be overtaken by its tenant's shorter
// requests when admission.size_aware is on (the default): half the interactive delay
// target, so the delay it adds to a long request stays within the target.
func shortFirst(a config.Admission, slo config.SLO) time.Duration {
	if !a.SizeAware {
		return 0
	}
	return delayTarget(a, slo, admission.Interactive) / 2
}

// newAdaptiveLimit is a backend's adaptive limit; it may let the backend's
// time to first token grow to a tenth of the pool's interactive objective
// (see admission.LimitConfig.LatencyFloor). The backend reports every
// request's end and the queue's kick reads the limit while requests wait,
// so a window needs only the samples its limit let start and closes on
// time without one (admission.LimitConfig.ReportsEnds and Clock): long
// streams give a sample only when one starts.
func newAdaptiveLimit(c config.Adaptive, slo config.SLO, now func() time.Time) admission.Limiter {
	return admission.NewAdaptiveLimit(admission.LimitConfig{
		Initial: c.Initial, Min: c.Min, Max: c.Max, Window: c.Window.D(), Tolerance: c.Tolerance,
		LatencyFloor: slo.Interactive / 10, ReportsEnds: true, Clock: now,
	})
}

// limits is a runtime's rate limiter with the metrics it registered, so a
// reload that changes the limits can retire them when the new limiter's
// replace them.
type limits struct {
	l   *ratelimit.Limiter
	cfg config.RateLimits
	reg *trackedRegisterer
}

// rateLimits reuses prev's limiter when the rate limit config is unchanged
// (buckets and the Redis connection survive a reload), else opens a new
// one, with prev's in-process buckets (ratelimit.Open), whose metrics
// replace the old one's (the same names) on Commit.
func (b *build) rateLimits() error {
	cfg := b.cfg.RateLimits
	if b.prev != nil && b.prev.limits != nil && reflect.DeepEqual(b.prev.limits.cfg, cfg) {
		b.out.limits = b.prev.limits
		return nil
	}
	var prevLimiter *ratelimit.Limiter
	if b.prev != nil && b.prev.limits != nil {
		prevLimiter = b.prev.limits.l // its buckets carry over
		// Replaced or dropped: its metrics leave with it. Before, a
		// reload that dropped the limits left them registered, frozen,
		// and the next limiter's collided with them: never registered,
		// its checks counted nowhere for the rest of the process's life.
		old := b.prev.limits
		b.out.handover = append(b.out.handover, old.reg.unregisterAll)
	}
	rules := ratelimit.RulesFrom(cfg) // validated by the validate stage
	if (reflect.DeepEqual(rules, ratelimit.Rules{}) || !hasRules(rules)) && !tokenLimits(b.cfg.Auth.JWT) {
		return nil
	}
	tr := &trackedRegisterer{reg: b.deps.Registry}
	l, err := ratelimit.Open(cfg, tr.orNil(), b.deps.Logger, b.deps.Redis, prevLimiter)
	if err != nil {
		return fmt.Errorf("rate_limits: %w", err)
	}
	lim := &limits{l: l, cfg: cfg, reg: tr}
	b.out.limits = lim
	log := b.deps.Logger
	b.out.handover = append(b.out.handover, func() { lim.reg.registerStaged(log) })
	return nil
}

// tokenLimits reports that bearer JWTs may carry their own rate limits
// (auth.jwt.claims.requests / tokens_per_minute, or an issuer's): a limiter is needed to
// apply them even when the config sets none.
func tokenLimits(j config.JWT) bool {
	for _, ic := range j.IssuerConfigs() { // each issuer names its own claims
		if c := ic.JWT.Claims; c.Requests != "" || c.TokensPerMinute != "" {
			return true
		}
	}
	return false
}

func hasRules(r ratelimit.Rules) bool {
	some := func(x ratelimit.Rule) bool { return !x.Requests.IsZero() || x.TokensPerMinute > 0 }
	if some(r.Global) || some(r.PerKey) || some(r.PerTenant) || some(r.PerIP) {
		return true
	}
	for _, x := range r.Keys {
		if some(x) {
			return true
		}
	}
	for _, x := range r.Tenants {
		if some(x) {
			return true
		}
	}
	return false
}

// trackedRegisterer stages what a new limiter registers: nothing reaches
// the registry until registerStaged (the runtime is installed), and what
// was registered can be undone (unregisterAll, when it is replaced).
type trackedRegisterer struct {
	reg    prometheus.Registerer
	staged []prometheus.Collector
	cs     []prometheus.Collector
}

func (t *trackedRegisterer) orNil() prometheus.Registerer {
	if t.reg == nil {
		return nil
	}
	return t
}

// Register stages c; it is registered by registerStaged.
func (t *trackedRegisterer) Register(c prometheus.Collector) error {
	t.staged = append(t.staged, c)
	return nil
}

func (t *trackedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		t.Register(c)
	}
}

func (t *trackedRegisterer) Unregister(c prometheus.Collector) bool { return t.reg.Unregister(c) }

// registerStaged registers what was staged. A collision (some other
// collector holds a name) is logged: the limiter works, unmeasured.
func (t *trackedRegisterer) registerStaged(log *slog.Logger) {
	if t.reg == nil {
		return
	}
	for _, c := range t.staged {
		if err := t.reg.Register(c); err != nil {
			if log != nil {
				log.Error("rate limiter metrics not registered", "error", err.Error())
			}
			continue
		}
		t.cs = append(t.cs, c)
	}
	t.staged = nil
}

func (t *trackedRegisterer) unregisterAll() {
	if t.reg == nil {
		return
	}
	for _, c := range t.cs {
		t.reg.Unregister(c)
	}
	t.cs = nil
}
