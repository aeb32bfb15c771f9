package gateway

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// minHedgeAfter keeps jitter around a very fast pool's typical latency
// from hedging every stream.
const minHedgeAfter = 10 * time.Millisecond

// hedgeAfter is how long after its send a streaming call with no first
// token yet (with or without a response head) sends a hedge to another
// backend: retry.hedge_factor times the smallest tail time to first
// token (endpoint.Backend.TailLatency, about a p95) among the usable
// backends, the one a hedge would most likely go to. 0 (no hedge) for
// non-streaming calls, a pool with nothing learned yet, or when a hedge
// could not start within the class's objective anyway; and for Responses
// API calls: a hedge would make a second response on another backend,
// stored there (store defaults to true) under an id no client sees, and
// one that continues a previous response can only be answered by the
// backend holding it; nor for a chat request with "store": true, which a
// hedge would store twice. Nor for a streamed transcription (the one
// model-addressed endpoint that streams): a second would transcribe the
// whole file again, for an answer whose first token comes after the
// encoder's pass over all of it on either backend.
func (rt *Runtime) hedgeAfter(served *Pool, c *upstreamCall) time.Duration {
	f := rt.Config.Retry.HedgeFactor
	if !c.peek.Stream || c.cpuOnly || f <= 0 || rt.Config.Retry.Attempts < 2 || c.peek.API == openai.APIResponses || c.peek.Store || c.ep != openai.EndpointNone {
		return 0
	}
	now := served.now()
	var tail, typical time.Duration
	for _, b := range served.Backends {
		if l := b.TailLatency(); l > 0 && (tail == 0 || l < tail) && b.Usable(now) {
			tail, typical = l, b.TypicalLatency()
		}
	}
	if tail == 0 {
		return 0
	}
	h := max(time.Duration(f*float64(tail)), minHedgeAfter)
	if h+typical > served.sloOf(c.id.class) {
		return 0
	}
	return h
}

// hedgeTenant holds the admission queue's tickets of hedges, apart from
// every client tenant's share (shown as such on /status while one races).
const hedgeTenant = "(hedges)"

// hedgeSlot grants a hedge (proxy.HedgeSlot) a spare admission slot: only
// while nothing waits in the model's queue and a slot is free beyond the
// spare reserve, taken back (preempt) by the first live request that would
// have to wait. Unlike a job it may take the handover past the engines'
// batch bounds (admission.Request.Hedge): kept out of it, hedges were
// skipped for capacity 185 -> 490 at 4x (docs/BENCHMARKS.md §7h). Its hold teaches the queue's drain estimate nothing. A pool
// without admission has no queue to ask: the hedge's backend's own limit
// is the only bound.
func (p *Pool) hedgeSlot(preempt func()) (release func(), ok bool) {
	if p.queue == nil {
		return func() {}, true
	}
	t, err := p.queue.Acquire(context.Background(), admission.Request{
		Tenant: hedgeTenant, Spare: true, Hedge: true, Preempt: preempt, Unmeasured: true})
	if err != nil {
		return nil, false
	}
	return t.Release, true
}

// countHedge counts what hedging did for one request.
func (g *Gateway) countHedge(model string, h proxy.HedgeOutcome) {
	m := g.metrics.Hedges
	switch h {
	case proxy.HedgeWon:
		m.WithLabelValues(model, "started").Inc()
		m.WithLabelValues(model, "won").Inc()
	case proxy.HedgeLost:
		m.WithLabelValues(model, "started").Inc()
	case proxy.HedgeNoCapacity:
		m.WithLabelValues(model, "skipped_capacity").Inc()
	case proxy.HedgeNoBudget:
		m.WithLabelValues(model, "skipped_budget").Inc()
	}
}

// hedgeName is what hedging did, as the access log names it ("" for
// nothing).
func hedgeName(h proxy.HedgeOutcome) string {
	switch h {
	case proxy.HedgeWon:
		return "won"
	case proxy.HedgeLost:
		return "lost"
	case proxy.HedgeNoCapacity:
		return "skipped_capacity"
	case proxy.HedgeNoBudget:
		return "skipped_budget"
	}
	return ""
}
