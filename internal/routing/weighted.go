package routing

import (
	"sync"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// smoothWeighted is nginx's smooth weighted round robin: each pick adds every
// candidate's weight to its current score, picks the highest, and subtracts
// the total from the winner. Weights 5,1,1 give a a b a c a a: the heavy
// backend's turns are spread out instead of bunched. Weights are the
// backends' share weights (ShareWeight): a slow-starting backend of weight
// 1 gets a tenth of a turn, not a whole one.
type smoothWeighted struct {
	mu      sync.Mutex
	current map[*endpoint.Backend]float64
}

func newSmoothWeighted() *smoothWeighted {
	return &smoothWeighted{current: make(map[*endpoint.Backend]float64)}
}

func (p *smoothWeighted) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *endpoint.Backend
	var total, bestScore float64
	for _, b := range c {
		w := b.ShareWeight()
		score := p.current[b] + w
		p.current[b] = score
		total += w
		if best == nil || score > bestScore {
			best, bestScore = b, score
		}
	}
	p.current[best] = bestScore - total
	return best
}
