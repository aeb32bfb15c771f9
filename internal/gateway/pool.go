package gateway

import (
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Pool is the set of backends serving one model and the policy that picks
// among them.
type Pool struct {
	Model    string
	Policy   string
	Backends []*endpoint.Backend
	// Fallbacks are the models that serve when this pool cannot.
	Fallbacks []string
	// SLO is the model's time-to-first-token objective per class.
	SLO config.SLO
	// cacheModel is the model part of the pool's cache keys (cacheModel).
	cacheModel string
	queue      *poolQueue // nil when admission is off
	picker     routing.Picker
	now        func() time.Time
}

// selector adapts a pool to proxy.Selector for one request.
type selector struct {
	pool *Pool
	req  routing.Request
}

func (s *selector) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	p := s.pool
	now := p.now()
	if b := routing.Select(now, p.picker, &s.req, p.Backends, tried); b != nil {
		return b, nil
	}
	// Tell "all busy" apart from "all broken": the first is back-pressure
	// (retry soon), the second an outage.
	for _, b := range p.Backends {
		if b.Usable(now) {
			return nil, proxy.ErrSaturated
		}
	}
	return nil, proxy.ErrNoBackend
}

// Ready reports whether at least one backend is usable.
func (p *Pool) Ready(now time.Time) bool {
	for _, b := range p.Backends {
		if b.Usable(now) {
			return true
		}
	}
	return false
}
