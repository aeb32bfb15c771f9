package routing

import (
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// roundRobin cycles through the candidates in order.
type roundRobin struct{ next atomic.Uint64 }

func (p *roundRobin) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	return c[(p.next.Add(1)-1)%uint64(len(c))]
}
