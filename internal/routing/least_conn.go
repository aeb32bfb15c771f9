package routing

import "github.com/sluice-gw/sluice/internal/endpoint"

// leastConn picks the candidate with the fewest outstanding requests per
// unit of weight (nginx least_conn). Ties are broken from a random start so
// equal backends share load instead of the first one taking every tie.
type leastConn struct{ rnd Rand }

func (p *leastConn) Pick(_ *Request, c []*endpoint.Backend) *endpoint.Backend {
	start := p.rnd.IntN(len(c))
	best := c[start]
	for i := 1; i < len(c); i++ {
		b := c[(start+i)%len(c)]
		// Compare inflight/weight without division: a/wa < b/wb <=> a*wb < b*wa.
		if b.Inflight()*int64(best.Weight()) < best.Inflight()*int64(b.Weight()) {
			best = b
		}
	}
	return best
}
