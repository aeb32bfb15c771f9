package proxy

import (
	"math"
	"sync/atomic"
)

// HedgeBudget caps hedges in flight at a share of the requests in flight,
// with a floor so a quiet pool can still hedge (Envoy's retry budget:
// budget_percent and min_retry_concurrency). Hedges only use spare
// capacity anyway; the budget bounds what a pool-wide slowdown (every
// stream late at once) can add on top. A nil budget allows any number.
type HedgeBudget struct {
	ratio    atomic.Uint64 // math.Float64bits of the share of requests in flight
	min      atomic.Int64
	requests atomic.Int64 // Forward calls in flight
	hedges   atomic.Int64 // hedges in flight
}

// NewHedgeBudget allows max(min, ratio x requests in flight) hedges in
// flight.
func NewHedgeBudget(ratio float64, min int) *HedgeBudget {
	b := &HedgeBudget{}
	b.Set(ratio, min)
	return b
}

// Set changes the share and the floor; the counts in flight stay, so a
// config reload keeps counting the hedges it did not start (before, each
// rebuild made a new budget that counted none of them).
func (b *HedgeBudget) Set(ratio float64, min int) {
	b.ratio.Store(math.Float64bits(ratio))
	b.min.Store(int64(min))
}

// begin and end count a request in flight.
func (b *HedgeBudget) begin() {
	if b != nil {
		b.requests.Add(1)
	}
}

func (b *HedgeBudget) end() {
	if b != nil {
		b.requests.Add(-1)
	}
}

// take counts a hedge in flight if the budget allows one; give returns it.
func (b *HedgeBudget) take() bool {
	if b == nil {
		return true
	}
	limit := max(b.min.Load(), int64(math.Float64frombits(b.ratio.Load())*float64(b.requests.Load())))
	for {
		cur := b.hedges.Load()
		if cur >= limit {
			return false
		}
		if b.hedges.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

func (b *HedgeBudget) give() {
	if b != nil {
		b.hedges.Add(-1)
	}
}

// InFlight is the number of hedges in flight (for tests and status).
func (b *HedgeBudget) InFlight() int64 {
	if b == nil {
		return 0
	}
	return b.hedges.Load()
}
