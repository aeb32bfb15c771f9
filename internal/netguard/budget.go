package netguard

import (
	"math"
	"sync/atomic"
)

// Budget is a global bound on bytes held, shared by every request: a
// reader reserves before it allocates and releases when it lets go, so the
// sum of what is held never exceeds the limit (Envoy's overload manager
// bounds buffers the same way). The zero value has no room; a nil *Budget
// is unlimited. Safe for concurrent use.
type Budget struct {
	held  atomic.Int64
	limit atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	b := &Budget{}
	b.limit.Store(limit)
	return b
}

// SetLimit changes the limit (config reload). Bytes already held stay
// held; new reservations see the new limit.
func (b *Budget) SetLimit(limit int64) {
	if b != nil {
		b.limit.Store(limit)
	}
}

// TryReserve takes n bytes if they fit under the limit.
func (b *Budget) TryReserve(n int64) bool {
	if b == nil {
		return true
	}
	for {
		h := b.held.Load()
		if h+n > b.limit.Load() {
			return false
		}
		if b.held.CompareAndSwap(h, h+n) {
			return true
		}
	}
}

// Release gives back n bytes taken with TryReserve.
func (b *Budget) Release(n int64) {
	if b != nil {
		b.held.Add(-n)
	}
}

// Limit is the bound now (math.MaxInt64 for a nil budget): a caller whose
// own reservation alone exceeds it tells a request that can never fit
// from one refused for load.
func (b *Budget) Limit() int64 {
	if b == nil {
		return math.MaxInt64
	}
	return b.limit.Load()
}

// Held is the bytes reserved now.
func (b *Budget) Held() int64 {
	if b == nil {
		return 0
	}
	return b.held.Load()
}
