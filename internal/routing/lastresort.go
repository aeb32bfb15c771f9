package routing

import (
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// SelectTrial is the last resort of a pool in which Select found no
// backend and none is usable: it picks, with picker, among the backends
// out of rotation by passive ejection alone (endpoint.Backend.TrialReady),
// not yet tried and with a slot, and claims the chosen one's trial: one
// request at a time per backend, whose success ends its ejection. nil
// when there is none (all held down by the active health check, breakers
// open, trials outstanding).
func SelectTrial(now time.Time, picker Picker, req *Request, backends []*endpoint.Backend, tried []*endpoint.Backend) *endpoint.Backend {
	b, _ := SelectTrialAmong(now, picker, req, backends, tried)
	return b
}

// SelectTrialAmong is SelectTrial, also returning the peer bound its
// pick was made under (SelectAmong).
func SelectTrialAmong(now time.Time, picker Picker, req *Request, backends []*endpoint.Backend, tried []*endpoint.Backend) (*endpoint.Backend, float64) {
	var cands []*endpoint.Backend
	peer := endpoint.PeerLimit(backends, now)
	for _, b := range backends {
		if !contains(tried, b) && hasCapacity(b, req, peer) && b.TrialReady(now) {
			cands = append(cands, b)
		}
	}
	for len(cands) > 0 {
		b := cands[0]
		if len(cands) > 1 {
			b = picker.Pick(req, cands)
		}
		if b.ClaimTrial(now) {
			return b, peer
		}
		// Another request took its trial first: the others.
		rest := cands[:0]
		for _, c := range cands {
			if c != b {
				rest = append(rest, c)
			}
		}
		if len(rest) == len(cands) { // b was not a candidate
			return nil, peer
		}
		cands = rest
	}
	return nil, peer
}
