package gateway

import (
	"reflect"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// A request the admission queue granted may still find every backend at
// its limit: a call whose ticket was already given back but whose backend
// slot not yet (a cancelled hedge or read-ahead ending), an adaptive limit
// just lowered. A slot then frees within moments, so the request waits for
// one, as Envoy's and HAProxy's queues hold a request for a server slot
// (HAProxy's timeout queue), rather than take an instant 503: bounded by
// the time left to its admission deadline and by its class's objective
// (waiting longer could not meet it), and cut when the client leaves. Only
// then is it refused, pool_saturated with Retry-After. It waits only for
// its first pick, or for the retry of an attempt whose backend could not
// be reached (SelectAfterUnreachable); hedges and other retries never
// wait.

// slotWaitOutcome says whether and how a first pick waited for a slot.
type slotWaitOutcome uint8

const (
	slotNotWaited slotWaitOutcome = iota
	slotWaitServed
	slotWaitRefused
)

// slotWait is how long c's first pick may wait for a backend slot: within
// its objective and admission deadline, and within what its wait in the
// queue left of its class's delay target (at least a tenth of the target),
// so that a request refused after queueing is refused by about the target
// here too, as the queue refuses its own waiters (admission/codel.go).
func (rt *Runtime) slotWait(served *Pool, c *upstreamCall) time.Duration {
	if c.cpuOnly { // its slots are not the engine's, whose releases the wait watches
		return 0
	}
	wait := served.sloOf(c.id.class) + c.slack // a non-streamed answer's client waits longer (answerSlack)
	if !c.until.IsZero() {
		wait = min(wait, c.until.Sub(served.now()))
	}
	if served.queue != nil {
		if target := served.queue.DelayTarget(c.id.class); target > 0 {
			target += c.slack
			wait = min(wait, max(target-c.queued, target/10))
		}
	}
	return max(wait, 0)
}

// anyUsable reports whether a backend of p not in tried may serve at
// all (busy, not broken): only then is a slot worth waiting for.
func (p *Pool) anyUsable(now time.Time, tried []*endpoint.Backend) bool {
	for _, b := range p.Backends {
		if b.Usable(now) && !slices.Contains(tried, b) {
			return true
		}
	}
	return false
}

// awaitSlot waits until one of the pool's backends not in tried
// (pinned: the Responses request's pinned one) frees a slot and it is
// picked, or s.slotWait passes, or the request's context ends (nil
// then). A pool replaced
// meanwhile (a reload, a discovery change) is left for its successor:
// the wait goes on there, and a backend of the new set with a slot free
// is picked at once; a pin that left with it ends the wait (pinLeft:
// Select refuses the call).
func (s *selector) awaitSlot(pinned bool, tried []*endpoint.Backend) *endpoint.Backend {
	if s.waitEnd.IsZero() {
		s.waitEnd = time.Now().Add(s.slotWait)
	}
	timer := time.NewTimer(time.Until(s.waitEnd))
	defer timer.Stop()
	var cases []reflect.SelectCase
	for {
		p := s.current()
		if s.pinLeft(p) { // refused by Select: no other backend holds the id
			return nil
		}
		backends := p.Backends
		if pinned && s.pin[0] != nil {
			backends = s.pin[:]
		}
		cases = append(cases[:0],
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.ctx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.replaced)})
		for _, b := range backends {
			// Freed is asked before the pick below, so no release between
			// the two is missed.
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(b.Freed())})
		}
		if b := s.pick(p.now(), p.picker, backends, tried); b != nil {
			s.waited = slotWaitServed
			return b
		}
		if chosen, _, _ := reflect.Select(cases); chosen < 2 {
			s.waited = slotWaitRefused
			return nil
		}
	}
}

// countSlotWait counts a first pick's wait for a backend slot.
func (g *Gateway) countSlotWait(model string, o slotWaitOutcome) {
	switch o {
	case slotWaitServed:
		g.metrics.SlotWaits.WithLabelValues(model, "served").Inc()
	case slotWaitRefused:
		g.metrics.SlotWaits.WithLabelValues(model, "refused").Inc()
	}
}
