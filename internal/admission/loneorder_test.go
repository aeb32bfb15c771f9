package admission

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// A lone long prompt of a tenant within its share is ordered as a request
// of the class's mean queued cost, not behind its whole cost of every
// backlogged flow; its flow is still charged the whole cost, and a tenant
// over its share gets no discount.
func TestLoneLongPromptWithinShareOrderedAtTheMean(t *testing.T) {
	for _, tc := range []struct {
		name     string
		overHeld float64 // cost b holds in service (0: none)
		wantLong int     // the long prompt's place in the grant order, at most
	}{
		{"within its share: served at the mean", 0, 1},
		{"over its share: ordered by its whole cost", 20000, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			slots := 1
			if tc.overHeld > 0 {
				slots = 2
			}
			q := NewQueue(QueueConfig{Fair: true}, newCapacity(slots).get, clk.Now)
			held := grantedT(t, q, Request{Tenant: "a", Cost: 500})
			if tc.overHeld > 0 {
				defer grantedT(t, q, Request{Tenant: "b", Cost: tc.overHeld}).Release()
			}
			rng := rand.New(rand.NewPCG(7, 11))
			var flood []*waiter
			for range 6 {
				flood = append(flood, submitT(t, q, Request{Tenant: "a", Cost: float64(300 + rng.IntN(400))}))
			}
			long := submitT(t, q, Request{Tenant: "b", Cost: 4000})
			second := submitT(t, q, Request{Tenant: "b", Cost: 100}) // queued behind it: pays for it
			order := grantOrder(t, q, held, append(slices.Clone(flood), long, second)...)
			if at := slices.Index(order, long); at > tc.wantLong {
				t.Errorf("long prompt granted %dth of %d, want at most %dth", at, len(order), tc.wantLong)
			}
			if at := slices.Index(order, second); at != len(order)-1 {
				t.Errorf("b's second request granted %dth of %d, want last: its flow is charged the long prompt's whole cost", at, len(order))
			}
		})
	}
}
