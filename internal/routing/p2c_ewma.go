package routing

import (
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// p2cEWMA is power of two choices on peak-EWMA latency: draw two distinct
// candidates at random and keep the one with the lower cost, where
// cost = latency estimate x outstanding work including this request's. The
// latency estimate is the larger of the peak EWMA of time to first token
// and how long the backend's waiting requests have gone without one
// (endpoint.Backend.Stalled).
// Work is estimated tokens (prompt and answer) when the request's are known,
// else requests (outstanding + 1): one 30k-token prompt keeps a backend
// busier than three short chats, and a count cannot see it. Two random
// draws avoid the herd that "always pick the global best" causes between
// gateway replicas.
type p2cEWMA struct {
	rnd Rand
	now Clock
}

// unseenLatency stands in for a backend with no sample yet, so a new backend
// is tried but not flooded.
const unseenLatency = time.Millisecond

func (p *p2cEWMA) Pick(req *Request, c []*endpoint.Backend) *endpoint.Backend {
	if len(c) == 1 { // Picker allows one candidate; IntN(0) below would panic
		return c[0]
	}
	i := p.rnd.IntN(len(c))
	j := p.rnd.IntN(len(c) - 1)
	if j >= i {
		j++
	}
	now := p.now()
	var work float64
	if req != nil {
		work = req.Work
	}
	if p.cost(c[j], now, work) < p.cost(c[i], now, work) {
		return c[j]
	}
	return c[i]
}

func (p *p2cEWMA) cost(b *endpoint.Backend, now time.Time, work float64) float64 {
	// A request already waiting longer than the estimate says the backend
	// is at least that slow now (it turned slow, or hangs) before any slow
	// answer can teach the estimate.
	lat := max(b.Latency(now), b.Stalled(now))
	if lat <= 0 {
		lat = unseenLatency
	}
	load := float64(b.Inflight() + 1)
	if work > 0 {
		load = float64(b.Work()) + work
	}
	return float64(lat) * load / float64(b.Weight())
}
