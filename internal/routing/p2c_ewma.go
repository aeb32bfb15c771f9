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
// latency) is left out of the draws while a non-outlier is a candidate,
// whatever their loads (outlier ejection, as Envoy's outlier detection
// takes a host out of rotation, but only while the others have room: the
// candidates are backends with a free slot). Within the cost alone, a backend ten times
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
	now := p.now()
	var buf [16]*endpoint.Backend
	c = withoutOutliers(c, now, buf[:0])
	if len(c) == 1 {
		return c[0]
	}
	i := p.rnd.IntN(len(c))
	j := p.rnd.IntN(len(c) - 1)
	if j >= i {
		j++
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

// withoutOutliers is c without its latency outliers, unless every
// candidate is one (then c): the two draws are made among the others.
// Drawing from all and letting an outlier lose to whichever candidate it
// was drawn with made that pick a coin toss between the non-outliers:
// with one outlier of three backends, two draws in three paired it with a
// random healthy peer, whatever the peers' loads, and the healthy pair
// carrying the whole load went out of balance (chaos backend-slow, /status
// sampled: 9-10 streams in flight on one, 3-5 on the other, more than the
// 8 slots of its engine, whose queue then held streams behind whole
// generations: the scenario's slowest first tokens). buf is scratch space
// (no allocation for pools of up to its length).
func withoutOutliers(c []*endpoint.Backend, now time.Time, buf []*endpoint.Backend) []*endpoint.Backend {
	ref := fastest(c, now)
	if ref <= 0 {
		return c
	}
	kept := buf
	for _, b := range c {
		if !outlier(b, now, ref) {
			kept = append(kept, b)
		}
	}
	if len(kept) == 0 || len(kept) == len(c) {
		return c
	}
	return kept
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
