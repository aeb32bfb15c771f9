package gateway

import (
	"fmt"
	"time"

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
}

// Deps are the long-lived parts a Runtime is built with.
type Deps struct {
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
	rt := &Runtime{Config: cfg, Pools: make(map[string]*Pool, len(cfg.Models))}
	for i, m := range cfg.Models {
		policy := m.Policy
		if policy == "" {
			policy = "p2c_ewma"
		}
		picker, err := routing.New(policy, deps.Rand, deps.Now)
		if err != nil {
			return nil, fmt.Errorf("models[%d].policy: %w", i, err)
		}
		pool := &Pool{Model: m.Name, Policy: policy, picker: picker, now: deps.Now}
		for j, bc := range m.Backends {
			spec := endpoint.Spec{URL: bc.URL, Weight: bc.Weight, MaxConcurrency: bc.MaxConcurrency,
				APIKey: bc.APIKey, UpstreamModel: bc.UpstreamModel}
			b := prev.reuse(m.Name, spec)
			if b != nil {
				b.SetHealthPolicy(hp)
			} else if b, err = endpoint.New(spec, hp); err != nil {
				return nil, fmt.Errorf("models[%d].backends[%d].url: %w", i, j, err)
			}
			pool.Backends = append(pool.Backends, b)
		}
		rt.Pools[m.Name] = pool
		rt.Models = append(rt.Models, m.Name)
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
