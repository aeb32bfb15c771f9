package endpoint

import (
	"math"
	"slices"
	"time"
)

// A burst admitted before any backend's batch size is known is placed
// within each backend's adaptive limit. Those limits are learned from
// latency one backend at a time, and on identical servers they still
// drift apart: measured in the chaos suite's slow-readers row, three
// simulators with 8 slots each had limits 18, 7 and 7 when 28 long
// requests landed at once. Routing balanced them until the two smaller
// limits were full and then sent everything else to the third: 15 in
// flight on 8 slots, 7 requests waiting inside that engine for whole
// generations, out of the gateway's queue and deadlines. No routing
// cost could spread that burst; only the third backend's room could.
//
// So until a backend's own batch size is known (learned from its metrics
// or from a backlog this gateway saw, see ObserveLoad and backlogBound),
// its adaptive limit is bounded by its peers': at most peerSpread times the
// pool's median limit per unit of weight. A pool of unequal servers says
// so with weights; a configured max_concurrency is the operator's word and
// is never bounded.

// peerSpread is how far past its peers' median limit (per unit of weight) a
// backend of unknown batch size may be filled.
const peerSpread = 1.5

// PeerLimit is the median concurrency limit per unit of weight of pool's
// usable backends at now, the reference LimitAmong bounds a backend by;
// 0 (no bound) with fewer than two such backends or when one of them is
// unlimited.
func PeerLimit(pool []*Backend, now time.Time) float64 {
	if len(pool) < 2 {
		// Fewer than two usable backends, whatever their states: no bound,
		// known without reading a state and a limit that the callers read
		// next anyway (three times per proxied request to one backend).
		return 0
	}
	var buf [16]float64
	limits := buf[:0]
	for _, b := range pool {
		if !b.Usable(now) {
			continue
		}
		l := b.Limit()
		if l <= 0 {
			return 0
		}
		limits = append(limits, float64(l)/float64(b.Weight()))
	}
	if len(limits) < 2 {
		return 0
	}
	slices.Sort(limits)
	// The lower median: with two backends, the smaller one's, so the other
	// is not filled past half again as much on a limit nobody tested.
	return limits[(len(limits)-1)/2]
}

// LimitAmong is Limit, bounded by its peers (PeerLimit) while the
// backend's batch size is unknown and its limit is adaptive; 0 means
// unlimited.
func (b *Backend) LimitAmong(peer float64) int {
	l := b.Limit()
	if peer <= 0 || l <= 0 || b.spec.MaxConcurrency > 0 || b.slotsKnown() {
		return l
	}
	return min(l, max(1, int(math.Floor(peerSpread*peer*float64(b.Weight())))))
}

// HasCapacityAmong reports whether the backend is below LimitAmong(peer).
func (b *Backend) HasCapacityAmong(peer float64) bool {
	l := b.LimitAmong(peer)
	return l <= 0 || b.inflight.Load() < int64(l)
}

// slotsKnown reports whether the backend's batch size has been learned,
// from its metrics or from a backlog this gateway saw: its limit is then
// capped by what it can start, which its peers' limits cannot improve on.
func (b *Backend) slotsKnown() bool {
	if b.localSlots.Load() > 0 {
		return true
	}
	c := b.capRec.Load()
	return c != nil && c.knownAt(c.now()) > 0
}
