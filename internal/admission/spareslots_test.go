package admission

import (
	"context"
	"errors"
	"testing"
)

// TestSpareWorkLeavesTheHandoverToLiveTraffic: the pool's limits allow 18
// requests (an engine's reported 16 slots and its handover of 2), of
// which the engine runs 16 at once (SpareCapacity). Spare work fills no
// more than the 16 less the reserve, sized against the 16; a live request
// granted past the 16 (it would wait in the engine's own queue) preempts
// the youngest spare ticket at once, as one that finds the pool full
// does. Before, jobs filled 18 less a reserve of the 18, and live
// requests granted into the handover waited in the engine's queue behind
// them, preempting nothing (docs/BENCHMARKS.md §7h).
func TestSpareWorkLeavesTheHandoverToLiveTraffic(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true, SpareReserve: 0.1, SpareCapacity: func() int { return 16 }},
		func() int { return 18 }, clk.Now)
	ctx := context.Background()
	live := func() *Ticket {
		t.Helper()
		tk, err := q.Acquire(ctx, Request{Tenant: "a"})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	held := []*Ticket{live()}
	var preempted []int
	jobs := 0
	for i := range 20 {
		tk, err := q.Acquire(ctx, Request{Tenant: "batch", Class: Batch, Spare: true, Preempt: func() { preempted = append(preempted, i) }})
		if errors.Is(err, ErrNoSpare) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
		jobs++
	}
	// 16 slots less a reserve of ceil(0.1 x 16) = 2, one live in flight.
	if jobs != 13 {
		t.Fatalf("spare tickets granted beside one live request: %d, want 13 (16 slots - 2 reserved - 1 live)", jobs)
	}
	if got := q.Spare(); got != 0 {
		t.Fatalf("Spare() = %d with the engines' slots less the reserve in use, want 0", got)
	}
	// Two live requests into the reserve: the engines run them at once.
	held = append(held, live(), live())
	if len(preempted) != 0 {
		t.Fatalf("live requests within the engines' slots preempted %v", preempted)
	}
	// The next one is granted past the 16 slots, into the handover:
	// the youngest spare ticket is taken back at once.
	held = append(held, live())
	if len(preempted) != 1 || preempted[0] != 12 {
		t.Fatalf("live request past the engines' slots: preempted %v, want the youngest spare ticket [12]", preempted)
	}
	if got := q.Preempted(); got != 1 {
		t.Fatalf("Preempted() = %d, want 1", got)
	}
	for _, tk := range held {
		tk.Release()
	}
}
