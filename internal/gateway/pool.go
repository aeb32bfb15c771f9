package gateway

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// Pool is the set of backends serving one model and the policy that picks
// among them.
type Pool struct {
	Model    string
	Policy   string
	Backends []*endpoint.Backend
	// Draining are backends that left the pool with requests still in
	// flight: routed to no more, but those requests hold the queue's
	// tickets, so they count in its capacity until they end.
	Draining []*endpoint.Backend
	// Fallbacks are the models that serve when this pool cannot.
	Fallbacks []string
	// SLO is the model's time-to-first-token objective per class.
	SLO config.SLO
	// LateStart is the time to first token past which a backend's late
	// start takes its reported room away (endpoint.Backend.StartsLate):
	// the interactive class's delay target.
	LateStart time.Duration
	// cacheModel is the model part of the pool's cache keys (cacheModel).
	cacheModel string
	queue      *admission.Queue // nil when admission is off
	picker     routing.Picker
	now        func() time.Time
	// successor is the pool that replaced this one for its model when a
	// reload or a discovery change swapped the runtime (Gateway.Swap);
	// nil while this one serves. A request keeps the runtime it started
	// with, but picks its backends from the newest pool of its model
	// (latest): one that waited (for a slot, in the queue) or is retried
	// after the swap is never sent to a backend that left meanwhile,
	// whose process may be gone, while the backends that replaced it
	// stand idle. replaced is closed when successor is set, for a wait
	// for a slot to pick again.
	successor atomic.Pointer[Pool]
	replaced  chan struct{}
}

// DrainingNow counts the pool's draining backends with requests still in
// flight.
func (p *Pool) DrainingNow() int {
	n := 0
	for _, b := range p.Draining {
		if b.Inflight() > 0 {
			n++
		}
	}
	return n
}

// Picker is the pool's routing policy, with its state (a round robin's
// position): a rebuild of an unchanged pool keeps it (internal/app).
func (p *Pool) Picker() routing.Picker { return p.picker }

// PoolParts are what a Pool is made of, built by internal/app.
type PoolParts struct {
	Model  *config.Model // name, fallbacks, backends' upstream models
	Policy string        // the picker's name
	SLO    config.SLO
	// LateStart: see Pool.LateStart.
	LateStart time.Duration
	Picker    routing.Picker
	Backends  []*endpoint.Backend
	Draining  []*endpoint.Backend // see Pool.Draining
	// Queue is the model's fair queue (nil: admission off); it measures
	// capacity on this pool (Capacity).
	Queue *admission.Queue
	Now   func() time.Time
}

// NewPool makes the pool of one model.
func NewPool(p PoolParts) *Pool {
	return &Pool{Model: p.Model.Name, Policy: p.Policy, Fallbacks: p.Model.Fallbacks, SLO: p.SLO, LateStart: p.LateStart, Backends: p.Backends, Draining: p.Draining,
		cacheModel: cacheModel(p.Model.Name, p.Model.Backends), picker: p.Picker, queue: p.Queue, now: p.Now,
		replaced: make(chan struct{})}
}

// latest is the pool serving p's model now: p, or the newest of the pools
// that replaced it.
func (p *Pool) latest() *Pool {
	for {
		next := p.successor.Load()
		if next == nil {
			return p
		}
		p = next
	}
}

// succeed records next as the pool that replaced p (Gateway.Swap). A
// next that p already follows (a runtime installed again) is no
// successor: the chain never loops.
func (p *Pool) succeed(next *Pool) {
	if next == p || next.latest() == p || p.replaced == nil {
		return
	}
	if p.successor.CompareAndSwap(nil, next) {
		close(p.replaced)
	}
}

// selector adapts a pool to proxy.Selector for one request.
type selector struct {
	pool *Pool
	req  routing.Request
	// ctx and slotWait bound the wait of a first pick that finds every
	// backend at its limit (saturated.go); waited says how it went.
	ctx      context.Context
	slotWait time.Duration
	waited   slotWaitOutcome
	// afterUnreachable: the pick is the retry of an attempt whose backend
	// could not be reached, which may wait for a slot too
	// (SelectAfterUnreachable).
	afterUnreachable bool
	// pin is the backend a first attempt goes to when it can take it
	// (a Responses API request's previous response lives there); nil:
	// none.
	pin [1]*endpoint.Backend
	// pinFor is the previous_response_id the pin holds; "" for a call
	// not pinned. Its pin gone from the pool, the call is refused
	// (pinLeft).
	pinFor string
	// peer is the peer bound (endpoint.PeerLimit) the last pick was made
	// under, which Claim claims its slot within.
	peer float64
	// waitEnd ends the slot waits of the request's first pick: one that
	// lost the slot it waited for to another pick (Claim) waits again,
	// within what is left.
	waitEnd time.Time
}

// pick is routing.Select, recording the peer bound it picked under.
func (s *selector) pick(now time.Time, picker routing.Picker, backends, tried []*endpoint.Backend) *endpoint.Backend {
	var b *endpoint.Backend
	b, s.peer = routing.SelectAmong(now, picker, &s.req, backends, tried)
	return b
}

// Claim takes b's slot within the bound its pick checked (proxy.SlotClaimer):
// routing.Select kept b while its in-flight count was under its peer
// bound (LimitAmong), and Acquire claimed against Limit alone, so two
// requests picked while b was one below the bound both got a slot
// (TestPickAndClaimShareTheBound). A first pick that waited for that slot
// and lost it may wait again.
func (s *selector) Claim(b *endpoint.Backend) bool {
	if b.AcquireAmong(s.peer) {
		return true
	}
	if s.waited == slotWaitServed {
		s.waited = slotNotWaited
	}
	return false
}

// current is the pool the request picks from now: the newest of its
// model's (Pool.successor).
func (s *selector) current() *Pool {
	s.pool = s.pool.latest()
	return s.pool
}

func (s *selector) Select(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	p := s.current()
	now := p.now()
	if s.pinLeft(p) {
		return nil, previousLeft(s.pinFor)
	}
	if pin := s.pin[0]; pin != nil && len(tried) == 0 {
		if b := s.pick(now, p.picker, s.pin[:], tried); b != nil {
			return b, nil
		}
		// The previous response lives on pin alone: any other backend
		// would answer that it does not exist, a 400 the client cannot
		// tell from the truth. Usable but at its limit (one just added
		// by a reload starts at its slow-start limit): wait for a slot
		// there as a first pick waits for any, then refuse as saturated,
		// 503 with Retry-After. A pin that cannot serve at all (ejected,
		// probe-down, breaker open) is passed over as before: the pool's
		// pick answers.
		if pin.Usable(now) {
			if s.slotWait > 0 && s.waited == slotNotWaited {
				if b := s.awaitSlot(true, nil); b != nil {
					return b, nil
				}
				if s.pinLeft(s.current()) { // left while the call waited for it
					return nil, previousLeft(s.pinFor)
				}
			}
			return nil, proxy.ErrSaturated
		}
	}
	if pin := s.pin[0]; pin != nil && slices.Contains(tried, pin) {
		return s.retryPinned(now)
	}
	if b := s.pick(now, p.picker, p.Backends, tried); b != nil {
		return b, nil
	}
	if (len(tried) == 0 || s.afterUnreachable) && s.slotWait > 0 && s.waited == slotNotWaited && p.anyUsable(now, tried) {
		if b := s.awaitSlot(false, tried); b != nil {
			return b, nil
		}
	}
	// Tell "all busy" apart from "all broken": the first is back-pressure
	// (retry soon), the second an outage.
	for _, b := range p.Backends {
		if b.Usable(now) {
			return nil, proxy.ErrSaturated
		}
	}
	// None usable: a backend out only by passive ejection gets a trial
	// (lastresort.go) rather than the pool refusing for fail_timeout.
	var b *endpoint.Backend
	if b, s.peer = routing.SelectTrialAmong(now, p.picker, &s.req, p.Backends, tried); b != nil {
		return b, nil
	}
	return nil, noBackend(now, p.Backends)
}

// pinLeft: the call continues a response whose backend is in no pool
// serving now (p): it left (a reload, a discovery change) before the
// call was routed (responsesSelector found none of its name) or while
// the call waited for it. The call is refused (previousLeft): any other
// backend would answer that it does not hold the id, in its own words
// (vLLM's 404 naming response_id), which the client cannot tell from an
// id that never existed. Before 2026-12-06 the pool's pick was sent the
// continuation and that 404 relayed. Before 2026-12-05 a continuation
// waiting for the pin's slot, or whose pick met the pin's Leave, was
// sent to the backend that had left (its process perhaps gone: refused,
// 502 with Retry-After, for an id no retry could reach). A backend
// respecified by the change (its weight or max_concurrency edited: a new
// *Backend under the same name) has not left: the pin follows it by
// name, as responsesSelector resolves one.
func (s *selector) pinLeft(p *Pool) bool {
	if s.pinFor == "" {
		return false
	}
	if pin := s.pin[0]; pin != nil && !slices.Contains(p.Backends, pin) {
		s.pin[0] = backendNamed(p.Backends, pin.Name())
	}
	return s.pin[0] == nil
}

// SelectAfterUnreachable is Select for the retry of an attempt whose
// backend could not be reached (proxy.UnreachableSelector): when every
// other backend is at its limit it waits for a slot, as a first pick
// does (once per request, bounded as that wait is), rather than answer
// 502 while they serve. Retries after other failures, and hedges, never
// wait.
func (s *selector) SelectAfterUnreachable(tried []*endpoint.Backend) (*endpoint.Backend, error) {
	s.afterUnreachable = true
	defer func() { s.afterUnreachable = false }()
	return s.Select(tried)
}

// retryPinned is the backend a retry of a pinned call goes to once its
// pin was tried (refused the connection, answered 502): the pin again,
// while it is usable and has a slot, since every other backend would
// answer that the previous response does not exist. Otherwise no backend:
// the attempt's own error (502 with Retry-After), or 503 pool_saturated
// with Retry-After when the pin is merely at its limit. The retry budget
// and attempt count bound these retries as any others (proxy.mayRetry).
func (s *selector) retryPinned(now time.Time) (*endpoint.Backend, error) {
	if b := s.pick(now, s.current().picker, s.pin[:], nil); b != nil {
		return b, nil
	}
	if s.pin[0].Usable(now) {
		return nil, proxy.ErrSaturated
	}
	return nil, noBackend(now, s.pin[:])
}

// Ready reports whether at least one backend is usable.
func (p *Pool) Ready(now time.Time) bool {
	for _, b := range p.Backends {
		if b.Usable(now) {
			return true
		}
	}
	return false
}
