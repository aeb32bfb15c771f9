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
//
// A latency outlier (settledLatency 4x the fastest candidate's typical
// latency) loses to any non-outlier it is drawn with, whatever their loads
// (outlier ejection, as Envoy's outlier detection takes a host out of
// rotation, but only while the others have room: the candidates are
// backends with a free slot). Within the cost alone, a backend ten times
// slower than its peers still won every draw against a peer with ten
// times its outstanding work, and on a loaded machine, where a healthy
// peer's peak EWMA holds spikes of several times its usual latency, the
// cost told them apart by only 2-4x: the chaos row backend-slow measured a
// third of the client's streams sent to the slow backend.
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
	if ref := fastest(c, now); ref > 0 {
		oi, oj := outlier(c[i], now, ref), outlier(c[j], now, ref)
		switch {
		case oi && !oj:
			return c[j]
		case oj && !oi:
			return c[i]
		}
	}
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

// outlierRatio is how many times slower than the fastest candidate a
// backend is before it counts as a latency outlier.
const outlierRatio = 4

// settledLatency is the latency an outlier is judged by: the smaller of
// the median of its last three samples (RecentLatency: two slow answers in
// a row, not one spike, and within two answers, where the typical latency
// needs a dozen) and the peak EWMA, which decays with time while no sample
// comes: an ejected backend gets no samples, so it is tried again within
// about a decay time constant, and ejected again by its next two answers
// if still slow (Envoy's ejection time, without a timer). Not the peak
// EWMA alone: on a loaded machine a healthy backend's holds spikes of
// several times its usual latency for seconds (chaos backend-slow: healthy
// peers at 150-275 ms next to the slow one's 400-540 ms), which hid the
// outlier. 0 before the first sample.
func settledLatency(b *endpoint.Backend, now time.Time) time.Duration {
	return min(b.Latency(now), b.RecentLatency())
}

// fastest is the lowest typical latency among c's backends with one: the
// reference an outlier is measured against. The typical latency, not
// settledLatency: the smallest of a few noisy recent samples on a loaded
// machine is a fraction of a healthy backend's usual latency, and a peer
// measured against it looked like an outlier (a chaos backend-slow trial:
// healthy backends ejected in turn, p99 161-182 ms against 100-106 ms).
func fastest(c []*endpoint.Backend, _ time.Time) time.Duration {
	var ref time.Duration
	for _, b := range c {
		if l := b.TypicalLatency(); l > 0 && (ref == 0 || l < ref) {
			ref = l
		}
	}
	return ref
}

// outlier reports whether b is a latency outlier next to ref (fastest).
func outlier(b *endpoint.Backend, now time.Time, ref time.Duration) bool {
	return settledLatency(b, now) >= outlierRatio*ref
}
