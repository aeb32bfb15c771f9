package proxy

import (
	"sync"
	"time"
)

// Budget caps retries at a fraction of requests (Finagle's RetryBudget):
// every request deposits Ratio tokens, every retry withdraws one, and a
// floor of MinPerSecond refills with time so low traffic can still retry.
// When a backend pool is overloaded most requests fail, and a plain
// "retry 3 times" would triple the load; the budget bounds that at 1+Ratio.
type Budget struct {
	ratio     float64
	perSecond float64
	max       float64

	mu      sync.Mutex
	balance float64
	last    time.Time
}

// NewBudget builds a budget; max bounds the saved-up balance so a long quiet
// period cannot fund a retry storm.
func NewBudget(ratio, minPerSecond float64) *Budget {
	return &Budget{ratio: ratio, perSecond: minPerSecond, max: budgetMax(ratio), balance: minPerSecond}
}

func budgetMax(ratio float64) float64 { return 10 + 100*ratio }

// Set changes the ratio and the floor, keeping the balance (capped at the
// new bound): a config reload, or a rebuild after discovery found other
// backends, keeps the process's one budget. Before, each rebuild made a
// new one, which handed out min_per_second retries at once however spent
// the old one was, so frequent rebuilds during an outage lifted the cap.
func (b *Budget) Set(ratio, minPerSecond float64) {
	b.mu.Lock()
	b.ratio, b.perSecond, b.max = ratio, minPerSecond, budgetMax(ratio)
	b.balance = min(b.balance, b.max)
	b.mu.Unlock()
}

// Deposit is called once per incoming request.
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.balance += b.ratio
	if b.balance > b.max {
		b.balance = b.max
	}
	b.mu.Unlock()
}

// Withdraw takes one retry token at now, reporting whether a retry is allowed.
func (b *Budget) Withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		if dt := now.Sub(b.last).Seconds(); dt > 0 {
			b.balance += dt * b.perSecond
			if b.balance > b.max {
				b.balance = b.max
			}
		}
	}
	b.last = now
	if b.balance < 1 {
		return false
	}
	b.balance--
	return true
}

// Refund gives back a token Withdraw took for a retry that was never
// sent (no backend was left to take it): the budget bounds retries made,
// and a token spent on none would halve what a pool whose every backend
// fails may retry, each failed request paying for one retry too many.
func (b *Budget) Refund() {
	b.mu.Lock()
	b.balance = min(b.balance+1, b.max)
	b.mu.Unlock()
}
