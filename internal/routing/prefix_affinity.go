package routing

import (
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// prefixAffinity sends requests that share a prompt prefix (Request.PrefixKey)
// to the same backend, where that prefix is already in the KV cache, by
// consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam
// 2018; HAProxy's hash-balance-factor).
//
// Each candidate owns vnodesPerWeight x Weight points on a 64-bit ring,
// placed by hashing its name, so every gateway replica builds the same ring.
// The key's point is looked up and the ring walked clockwise; the first
// candidate whose load after this request stays within
//
//	bound(b) = ceil((1+epsilon) x (total + 1) x weight(b) / total weight)
//
// gets the request. total is the candidates' summed load, so with equal
// weights no backend goes above (1+epsilon) x the mean, rounded up. A
// candidate's load is the larger of this gateway's outstanding requests on
// it and, when it has a fresh scrape, its queue as least_load estimates it
// (running + waiting + sent since the scrape): a backend other clients keep
// busy is skipped too, and its keys spill to the next point on the ring.
//
// Removing a backend moves only the keys it owned; adding one takes about
// 1/n of the keys. A request without a key (PrefixKey 0) goes to the
// candidate with the fewest outstanding requests per unit of weight.
//
// With scored set (policy prefix_affinity+least_load) the ring walk is the
// same but a candidate is acceptable while its least_load score (queue per
// batch slot plus kv^2, see leastLoad) is within scoreBand of the lowest
// candidate's: an absolute bound on how much longer a queue the prefix's
// cache may cost. The ratio to the mean above is tight when few requests
// are outstanding (at 5 over 4 backends the bound is 2, so a key's home
// holding 2 spills) and loose when many are (at 40 over 4 it is 13, while
// another backend may hold 1). A request without a key goes to least_load.
type prefixAffinity struct {
	epsilon  float64
	scored   bool
	fallback Picker
	now      Clock

	// last is the ring of the most recent candidate set: candidates rarely
	// change, so the hot path is one atomic load and a comparison.
	last  atomic.Pointer[hashRing]
	mu    sync.Mutex
	rings map[uint64]*hashRing // by candidate-set fingerprint; guarded by mu
	stats *RingStats           // nil: not counted
}

// RingStats counts prefix-affinity ring builds across a process's
// pickers (they are rebuilt on a reload, the counts are not): a build
// costs vnodesPerWeight points per unit of weight hashed and sorted, and
// happens on the first request that sees a candidate set (a backend
// ejected, returned, discovered or reloaded). Builds climbing steadily
// mean candidate sets churn past the maxRings cache; resets count the
// times that cache was full and started over.
type RingStats struct {
	built, resets atomic.Uint64
}

// Built is the rings built.
func (s *RingStats) Built() uint64 { return s.built.Load() }

// Resets is the times a full ring cache started over.
func (s *RingStats) Resets() uint64 { return s.resets.Load() }

// CountRings makes p count its ring builds in s when it is a
// prefix-affinity picker; other pickers build no rings.
func CountRings(p Picker, s *RingStats) {
	if pa, ok := p.(*prefixAffinity); ok {
		pa.stats = s
	}
}

const (
	// vnodesPerWeight is the points a backend of weight 1 owns: enough
	// that each backend's share of the ring is within a few percent.
	vnodesPerWeight = 100
	// defaultBalance is epsilon: max/mean load at most 1.25.
	defaultBalance = 0.25
	// scoreBand is prefix_affinity+least_load's bound: a quarter of a
	// batch, 4 more queued requests than the least loaded backend at 16
	// slots (KV pressure counted as least_load counts it).
	scoreBand = 0.25
	// maxRings bounds the ring cache; past it the cache starts over.
	maxRings = 64
)

// newPrefixAffinity builds prefix_affinity, or prefix_affinity+least_load
// when scored is set.
func newPrefixAffinity(rnd Rand, now Clock, scored bool) *prefixAffinity {
	p := &prefixAffinity{
		epsilon:  defaultBalance,
		scored:   scored,
		fallback: &leastConn{rnd: rnd},
		now:      now,
		rings:    make(map[uint64]*hashRing),
	}
	if scored {
		p.fallback = &leastLoad{rnd: rnd, now: now}
	}
	return p
}

func (p *prefixAffinity) Pick(req *Request, c []*endpoint.Backend) *endpoint.Backend {
	if req == nil || req.PrefixKey == 0 || len(c) == 1 {
		if len(c) == 1 {
			return c[0]
		}
		return p.fallback.Pick(req, c)
	}
	r := p.ring(c)

	var stack [32]float64 // pools are small; Pick runs per request
	var loads []float64
	var bound float64 // prefix_affinity: scale of the bound; +least_load: the highest acceptable score
	if p.scored {
		loads = scores(c, p.now(), stack[:0])
		bound = slices.Min(loads) + scoreBand
	} else {
		var total float64
		loads, total = requestLoads(c, p.now(), stack[:0])
		bound = (1 + p.epsilon) * (total + 1) / float64(r.weight)
	}

	i := r.search(mix64(req.PrefixKey))
	for range len(r.points) {
		if i == len(r.points) {
			i = 0
		}
		o := r.owner[i]
		if p.scored && loads[o] <= bound ||
			!p.scored && loads[o]+1 <= math.Ceil(bound*float64(r.weights[o])) {
			return c[o]
		}
		i++
	}
	// Unreachable: the bounds sum to more than total, and the lowest
	// score is within the band of itself.
	return p.fallback.Pick(req, c)
}

// requestLoads appends each candidate's load in requests to buf: the
// larger of this gateway's outstanding requests and, with a fresh scrape,
// least_load's queue estimate. It also returns their sum.
func requestLoads(c []*endpoint.Backend, now time.Time, buf []float64) ([]float64, float64) {
	var total float64
	for _, b := range c {
		l := float64(b.Inflight())
		if q, ok := scrapedQueue(b, now); ok {
			l = max(l, q)
		}
		buf = append(buf, l)
		total += l
	}
	return buf, total
}

// scores appends each candidate's least_load score to buf: a candidate
// without a fresh reading counts as saturated while others have one, and
// when none has, the score is outstanding requests per batch slot.
func scores(c []*endpoint.Backend, now time.Time, buf []float64) []float64 {
	fresh := 0
	for _, b := range c {
		s, ok := loadScore(b, now)
		if ok {
			fresh++
		} else {
			s = math.Inf(1)
		}
		buf = append(buf, s)
	}
	if fresh == 0 {
		for i, b := range c {
			buf[i] = float64(b.Inflight()) / capacity(b)
		}
	}
	return buf
}

// scrapedQueue is least_load's queue estimate for b; ok is false without a
// fresh reading.
func scrapedQueue(b *endpoint.Backend, now time.Time) (float64, bool) {
	l, ok := b.Load()
	if !ok || !l.Fresh(now) {
		return 0, false
	}
	sent := float64(b.Inflight() - l.InflightAtScrape)
	return max(l.Running+l.Waiting+sent, 0), true
}

// ring returns the hash ring for exactly the candidates c, building it on
// first sight of this set.
func (p *prefixAffinity) ring(c []*endpoint.Backend) *hashRing {
	if r := p.last.Load(); r != nil && r.matches(c) {
		return r
	}
	fp := fingerprint(c)
	p.mu.Lock()
	r := p.rings[fp]
	if r == nil || !r.matches(c) {
		if len(p.rings) >= maxRings {
			clear(p.rings)
			if p.stats != nil {
				p.stats.resets.Add(1)
			}
		}
		r = newHashRing(c)
		if p.stats != nil {
			p.stats.built.Add(1)
		}
		p.rings[fp] = r
	}
	p.mu.Unlock()
	p.last.Store(r)
	return r
}

// hashRing is an immutable ring over one candidate set.
type hashRing struct {
	backends []*endpoint.Backend // the candidate set, in Select's order
	weights  []int               // their weights (at least 1) when the ring was built
	weight   int                 // sum of weights
	points   []uint64            // sorted
	owner    []int32             // owner[i] indexes backends for points[i]
}

func newHashRing(c []*endpoint.Backend) *hashRing {
	r := &hashRing{backends: slices.Clone(c), weights: make([]int, len(c))}
	type point struct {
		h uint64
		o int32
	}
	var pts []point
	for i, b := range c {
		w := max(b.Weight(), 1)
		r.weights[i] = w
		r.weight += w
		name := b.Name()
		for v := range vnodesPerWeight * w {
			h := fnv64(name + "#" + strconv.Itoa(v))
			pts = append(pts, point{mix64(h), int32(i)})
		}
	}
	// Ties (astronomically rare) are broken by name so the order is stable.
	slices.SortFunc(pts, func(a, b point) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		if c[a.o].Name() < c[b.o].Name() {
			return -1
		}
		return 1
	})
	r.points = make([]uint64, len(pts))
	r.owner = make([]int32, len(pts))
	for i, pt := range pts {
		r.points[i], r.owner[i] = pt.h, pt.o
	}
	return r
}

// matches reports whether r was built for exactly c.
func (r *hashRing) matches(c []*endpoint.Backend) bool {
	if len(c) != len(r.backends) {
		return false
	}
	for i, b := range c {
		if b != r.backends[i] || max(b.Weight(), 1) != r.weights[i] {
			return false
		}
	}
	return true
}

// search returns the index of the first point >= h (len(points) if none).
func (r *hashRing) search(h uint64) int {
	lo, hi := 0, len(r.points)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// fingerprint hashes a candidate set's names and weights without allocating.
func fingerprint(c []*endpoint.Backend) uint64 {
	h := uint64(fnvOffset64)
	for _, b := range c {
		h = fnvAdd(h, b.Name())
		h = (h ^ uint64(b.Weight())) * fnvPrime64
		h = (h ^ 0xff) * fnvPrime64
	}
	return h
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnv64(s string) uint64 { return fnvAdd(fnvOffset64, s) }

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// mix64 is splitmix64's finaliser: FNV's low bits are weak, and ring
// points must spread evenly over the whole 64-bit circle.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
