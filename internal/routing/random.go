package routing

import "github.com/sluice-gw/sluice/internal/endpoint"

// random picks uniformly; a baseline for benchmarks.
type random struct{ rnd Rand }

func (p *random) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	return c[p.rnd.IntN(len(c))]
}
