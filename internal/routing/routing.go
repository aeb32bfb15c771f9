// Package routing chooses a backend for a request. It is split in two steps:
// Select filters the pool down to candidates (usable, not yet tried, under
// their concurrency cap, non-busy first), then a Picker policy chooses one.
// Policies only read backend state, so each is a few lines in its own file.
package routing

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Request is what a policy may look at when choosing.
type Request struct {
	Model string
	// PrefixKey hashes the prompt's leading part (openai.PrefixKey); 0 when
	// unknown. Only the prefix_affinity policies read it (UsesPrefixKey),
	// and the gateway computes it only for pools using them.
	PrefixKey uint64
	// Work is the request's estimated tokens (prompt and answer); 0 when
	// unknown. Policies weighing outstanding work add it to a candidate's.
	Work float64
	// CPU: a call served off the engine (the server's tokenizer), which
	// needs a CPU-side slot (endpoint.Backend.HasCPUCapacity), not an
	// engine slot.
	CPU bool
}

// Picker chooses one of candidates (never empty). Implementations must be
// safe for concurrent use.
type Picker interface {
	Pick(req *Request, candidates []*endpoint.Backend) *endpoint.Backend
}

// Rand is the randomness a policy needs; injected so tests are repeatable.
type Rand interface {
	IntN(n int) int
}

// lockedRand makes a *rand.Rand safe for concurrent pickers.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	v := l.r.IntN(n)
	l.mu.Unlock()
	return v
}

// NewRand returns a concurrency-safe Rand seeded with seed.
func NewRand(seed uint64) Rand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Clock is injected wherever a policy needs the time.
type Clock func() time.Time

// policies maps a config name to its constructor. Built per call (no
// package-level registry) so tests and reloads stay independent.
func policies(rnd Rand, now Clock) map[string]func() Picker {
	return map[string]func() Picker{
		"round_robin":     func() Picker { return &roundRobin{} },
		"weighted":        func() Picker { return newSmoothWeighted() },
		"least_conn":      func() Picker { return &leastConn{rnd: rnd} },
		"p2c_ewma":        func() Picker { return &p2cEWMA{rnd: rnd, now: now} },
		"random":          func() Picker { return &random{rnd: rnd} },
		"least_load":      func() Picker { return &leastLoad{rnd: rnd, now: now} },
		"prefix_affinity": func() Picker { return newPrefixAffinity(rnd, now, false) },
		// prefix_affinity bounded by least_load's score (KV pressure
		// included), least_load for requests without a key.
		"prefix_affinity+least_load": func() Picker { return newPrefixAffinity(rnd, now, true) },
	}
}

// UsesPrefixKey reports whether the policy reads Request.PrefixKey, so the
// caller computes it (a decode of the prompt) only where it is used.
func UsesPrefixKey(policy string) bool {
	return policy == "prefix_affinity" || policy == "prefix_affinity+least_load"
}

// UsesLoadMetrics reports whether the policy reads scraped backend load
// (endpoint.Load), so the caller runs the scraper only where it is used.
func UsesLoadMetrics(policy string) bool {
	return policy == "least_load" || UsesPrefixKey(policy)
}

// PolicyNames lists the valid policy names, sorted.
func PolicyNames() []string {
	var names []string
	for n := range policies(nil, nil) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds the named policy.
func New(name string, rnd Rand, now Clock) (Picker, error) {
	mk, ok := policies(rnd, now)[name]
	if !ok {
		return nil, fmt.Errorf("unknown policy %q; allowed: %s", name, strings.Join(PolicyNames(), ", "))
	}
	return mk(), nil
}

// candidatePool recycles candidate slices: Select runs on every request.
var candidatePool = sync.Pool{New: func() any { s := make([]*endpoint.Backend, 0, 16); return &s }}

// soonestBusy appends to cands the busy backends not tried and with room
// whose push-back ends first: a backend's Retry-After is honoured when
// every backend has pushed back (the one that asked for 2 s is asked
// before the one that asked for 30), and ties go to the picker.
func soonestBusy(now time.Time, req *Request, backends, tried []*endpoint.Backend, peer float64, cands []*endpoint.Backend) []*endpoint.Backend {
	var soonest time.Time
	for _, b := range backends {
		if contains(tried, b) || !hasCapacity(b, req, peer) || b.State(now) != endpoint.StateBusy {
			continue
		}
		until := b.BusyUntil()
		switch {
		case len(cands) > 0 && until.After(soonest):
			continue
		case len(cands) > 0 && until.Before(soonest):
			cands = cands[:0]
		}
		soonest = until
		cands = append(cands, b)
	}
	return cands
}

// Select filters backends and asks picker for one. tried lists backends
// already attempted for this request (retries go elsewhere). It returns nil
// when no backend can take the request now. Busy backends (recent 429/503)
// are only chosen when no healthy one has room. Room is each backend's
// limit, bounded by its peers' while its batch size is unknown
// (endpoint.PeerLimit), so a burst is not piled onto the one backend whose
// adaptive limit happened to grow furthest.
func Select(now time.Time, picker Picker, req *Request, backends []*endpoint.Backend, tried []*endpoint.Backend) *endpoint.Backend {
	b, _ := SelectAmong(now, picker, req, backends, tried)
	return b
}

// SelectAmong is Select, also returning the peer bound (PeerLimit) the
// pick was made under: its slot is to be claimed within that bound
// (endpoint.Backend.AcquireAmong), not the backend's own Limit, or two
// picks racing for its last slot under the bound both get one.
func SelectAmong(now time.Time, picker Picker, req *Request, backends []*endpoint.Backend, tried []*endpoint.Backend) (*endpoint.Backend, float64) {
	bufp := candidatePool.Get().(*[]*endpoint.Backend)
	cands := (*bufp)[:0]
	peer := endpoint.PeerLimit(backends, now)
	var busy int
	for _, b := range backends {
		if contains(tried, b) || !hasCapacity(b, req, peer) {
			continue
		}
		switch b.State(now) {
		case endpoint.StateHealthy:
			cands = append(cands, b)
		case endpoint.StateBusy:
			busy++
		}
	}
	if len(cands) == 0 && busy > 0 {
		cands = soonestBusy(now, req, backends, tried, peer, cands)
	}
	var chosen *endpoint.Backend
	switch len(cands) {
	case 0:
	case 1:
		chosen = cands[0]
	default:
		chosen = picker.Pick(req, cands)
	}
	clear(cands)
	*bufp = cands[:0]
	candidatePool.Put(bufp)
	return chosen, peer
}

// hasCapacity reports whether b has a slot of the kind req needs.
func hasCapacity(b *endpoint.Backend, req *Request, peer float64) bool {
	if req.CPU {
		return b.HasCPUCapacity()
	}
	return b.HasCapacityAmong(peer)
}

func contains(list []*endpoint.Backend, b *endpoint.Backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}
