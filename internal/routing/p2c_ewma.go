package routing

import (
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// p2cEWMA is power of two choices on peak-EWMA latency: draw two distinct
// candidates at random and keep the one with the lower cost, where
// cost = latency estimate x (outstanding + 1). Two random draws avoid the
// herd that "always pick the global best" causes between gateway replicas.
type p2cEWMA struct {
	rnd Rand
	now Clock
}

// unseenLatency stands in for a backend with no sample yet, so a new backend
// is tried but not flooded.
const unseenLatency = time.Millisecond

func (p *p2cEWMA) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	if len(c) == 1 { // Picker allows one candidate; IntN(0) below would panic
		return c[0]
	}
	i := p.rnd.IntN(len(c))
	j := p.rnd.IntN(len(c) - 1)
	if j >= i {
		j++
	}
	now := p.now()
	if p.cost(c[j], now) < p.cost(c[i], now) {
		return c[j]
	}
	return c[i]
}

func (p *p2cEWMA) cost(b *endpoint.Backend, now time.Time) float64 {
	lat := b.Latency(now)
	if lat <= 0 {
		lat = unseenLatency
	}
	return float64(lat) * float64(b.Inflight()+1) / float64(b.Weight())
}
