package gateway

import "time"

// Arrivals is told of each live inference request that reaches a model's
// pool: the traffic forecast's input (internal/forecast, wired by
// internal/app). It is demand, so it is counted before rate limits, the
// cache and admission, refused requests included. Jobs are not counted:
// they run on spare capacity and must not drive scale-out. tokens is the
// admission estimate (prompt bytes / 4 + max_tokens). It is called on the
// request's goroutine and must be quick.
type Arrivals interface {
	Arrival(t time.Time, model, tenant string, tokens float64)
}

// demandStage tells Options.Arrivals of the request.
type demandStage struct{ g *Gateway }

func (s demandStage) serve(x *exchange) bool {
	// A tokenizer call (upstreamCall.cpuOnly) is no demand on the engine
	// the forecast sizes.
	if s.g.arrivals == nil || x.job != nil || x.ep.CPUOnly() {
		return true
	}
	s.g.arrivals.Arrival(x.rec.start, x.parsed.Peek.Model, x.id.tenant, x.cost)
	return true
}
