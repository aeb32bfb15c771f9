package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// limits is a runtime's rate limiter with the metrics it registered, so a
// reload that changes the limits can retire them before the new limiter
// registers its own.
type limits struct {
	l   *ratelimit.Limiter
	cfg ratelimit.Config
	reg *trackedRegisterer
}

// openLimits reuses prev's limiter when the rate limit config is unchanged
// (buckets and the Redis connection survive a reload), else opens a new one
// whose metrics are only staged: they replace the old limiter's (the same
// names) when the runtime is installed. nil means no rate limits are
// configured.
func openLimits(cfg ratelimit.Config, prev *Runtime, reg prometheus.Registerer, log *slog.Logger) (*limits, error) {
	if prev != nil && prev.limits != nil && reflect.DeepEqual(prev.limits.cfg, cfg) {
		return prev.limits, nil
	}
	rules, err := cfg.Rules()
	if err != nil {
		return nil, err
	}
	if reflect.DeepEqual(rules, ratelimit.Rules{}) || !hasRules(rules) {
		return nil, nil
	}
	tr := &trackedRegisterer{reg: reg}
	l, err := ratelimit.Open(cfg, tr.orNil(), log)
	if err != nil {
		return nil, err
	}
	return &limits{l: l, cfg: cfg, reg: tr}, nil
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

// rateLimit is the rate limit stage: take the request and its estimated
// tokens from every applicable limit, wait out an nginx-style delay, and
// set the x-ratelimit-* headers. The returned Result reconciles the token
// estimate with the backend's usage later.
func (rt *Runtime) rateLimit(ctx context.Context, w http.ResponseWriter, subject ratelimit.Subject, tokens float64, now time.Time) (ratelimit.Result, error) {
	if rt.limits == nil {
		return ratelimit.Result{Allowed: true}, nil
	}
	res, err := rt.limits.l.Check(ctx, subject, int64(tokens), now)
	res.WriteHeaders(w.Header())
	switch {
	case res.Allowed:
	case res.Scope == "store" || errors.Is(err, ratelimit.ErrStoreUnavailable):
		return res, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "rate_limit_store_unavailable",
			Message: "the shared rate limit store is unavailable and the gateway is configured to fail closed", RetryAfter: res.RetryAfter}
	case res.NeverFits:
		// Not retryable: SDKs retry 429s on their own, so this must not be one.
		return res, openai.BadRequest("exceeds_rate_limit_capacity", res.Reason()+"; reduce the prompt or max_tokens")
	default:
		return res, &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded",
			Message: res.Reason(), RetryAfter: res.RetryAfter}
	}
	if res.Delay > 0 { // nginx limit_req without nodelay: pace the excess
		t := time.NewTimer(res.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return res, context.Canceled
		}
	}
	return res, nil
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
