package breaker

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultMaxEjectedRatio is the share of a pool that may be ejected when
// NewGroup is given zero.
const DefaultMaxEjectedRatio = 0.5

// Group caps how many of a pool's breakers may be ejected (OPEN or
// HALF-OPEN) at once, so a pool-wide problem — an overloaded model server
// fleet, a bad deploy, a broken network path in the gateway itself — never
// ejects everything and turns partial service into none.
//
// The cap follows Envoy's max_ejection_percent: at most
// floor(maxEjectedRatio × members) breakers are ejected, but at least one may
// always be, even in a one-backend pool (there, opening lets callers fail
// fast and fall back to another model instead of hammering a dead backend).
// A trip that the cap refuses leaves the breaker CLOSED, clears its window
// and is counted (Breaker Stats.RefusedTrips, Group.RefusedTrips).
//
// The cap governs trips only: a breaker already open when it joins stays
// open, and a half-open breaker whose trial fails reopens regardless, since
// neither adds an ejection.
type Group struct {
	ratio   float64
	refused atomic.Uint64

	mu      sync.Mutex // taken after a member's own lock, never before
	members []*Breaker
}

// NewGroup builds an empty group. maxEjectedRatio <= 0 means
// DefaultMaxEjectedRatio; 1 or more means no cap.
func NewGroup(maxEjectedRatio float64) *Group {
	if maxEjectedRatio <= 0 {
		maxEjectedRatio = DefaultMaxEjectedRatio
	}
	return &Group{ratio: maxEjectedRatio}
}

// Add makes b a member; a breaker belongs to at most one group, so b leaves
// any group it was in. Adding a member twice is harmless.
func (g *Group) Add(b *Breaker) {
	old := b.group.Swap(g)
	if old == g {
		return
	}
	if old != nil {
		old.drop(b)
	}
	g.mu.Lock()
	g.members = append(g.members, b)
	g.mu.Unlock()
}

// Remove takes b out of the group (a backend left the pool); b keeps its
// state. Removing a non-member does nothing.
func (g *Group) Remove(b *Breaker) {
	if b.group.CompareAndSwap(g, nil) {
		g.drop(b)
	}
}

func (g *Group) drop(b *Breaker) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.members, b); i >= 0 {
		g.members = slices.Delete(g.members, i, i+1)
	}
}

// Len is the number of members.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.members)
}

// Ejected is how many members are OPEN or HALF-OPEN now.
func (g *Group) Ejected() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ejectedLocked()
}

// MaxEjected is how many members the cap lets be ejected at the current size.
func (g *Group) MaxEjected() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limitLocked()
}

// RefusedTrips is how many trips the cap has refused, over all members.
func (g *Group) RefusedTrips() uint64 { return g.refused.Load() }

func (g *Group) ejectedLocked() int {
	n := 0
	for _, m := range g.members {
		if State(m.state.Load()) != Closed {
			n++
		}
	}
	return n
}

func (g *Group) limitLocked() int {
	n := len(g.members)
	if g.ratio >= 1 {
		return n
	}
	// The epsilon keeps 0.3 × 10 = 2.9999999999999996 from flooring to 2.
	limit := int(math.Floor(g.ratio*float64(n) + 1e-9))
	return max(limit, 1)
}

// tryEject runs open (which moves a member out of CLOSED) if one more ejection fits
// under the cap. Counting and opening happen under the group's lock, so two
// members tripping at once cannot both squeeze under the cap.
func (g *Group) tryEject(open func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ejectedLocked()+1 > g.limitLocked() {
		g.refused.Add(1)
		return false
	}
	open()
	return true
}
