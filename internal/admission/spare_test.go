package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSpareWorkYieldsToLiveTraffic(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true, SpareReserve: 0.25}, func() int { return 4 }, clk.Now)
	ctx := context.Background()
	live0, err := q.Acquire(ctx, Request{Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}

	var preempted []int
	spare := func(i int) (*Ticket, error) {
		return q.Acquire(ctx, Request{Tenant: "batch", Class: Batch, Spare: true, Preempt: func() { preempted = append(preempted, i) }})
	}
	s1, err1 := spare(1)
	s2, err2 := spare(2)
	if err1 != nil || err2 != nil {
		t.Fatalf("spare work on an idle pool: %v %v", err1, err2)
	}
	// The reserve: with live traffic in flight the last slot stays free.
	if _, err := spare(3); !errors.Is(err, ErrNoSpare) {
		t.Fatalf("third spare with a reserve of 1 slot: %v, want ErrNoSpare", err)
	}
	live1, err := q.Acquire(ctx, Request{Tenant: "a", Deadline: clk.Now().Add(time.Second)})
	if err != nil || len(preempted) != 0 {
		t.Fatalf("live request into the reserved slot: %v, preempted %v", err, preempted)
	}
	// The pool is full: the next live request preempts the youngest spare
	// ticket and gets its slot when it is released.
	got := make(chan *Ticket)
	go func() {
		t2, err := q.Acquire(ctx, Request{Tenant: "a", Deadline: clk.Now().Add(time.Second)})
		if err != nil {
			t.Error(err)
		}
		got <- t2
	}()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for q.Preempted() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no spare ticket preempted")
		}
		time.Sleep(time.Millisecond)
	}
	if len(preempted) != 1 || preempted[0] != 2 {
		t.Fatalf("preempted %v, want the youngest (2)", preempted)
	}
	// Spare work is refused while a live request waits, and not counted
	// as a refusal.
	if _, err := spare(4); !errors.Is(err, ErrNoSpare) {
		t.Fatalf("spare while live waits: %v", err)
	}
	s2.Release()
	live2 := <-got
	if st := q.Stats(); st.InUse != 4 || st.Queued != 0 || len(st.Rejected) != 0 && sumRejected(st.Rejected) != 0 {
		t.Fatalf("stats after the hand-over: %+v", st)
	}
	for _, tk := range []*Ticket{s1, live0, live1, live2} {
		tk.Release()
	}
}

// With no live request in flight there is nothing to reserve for: spare
// work may fill the pool (a live arrival would preempt).
func TestSpareWorkFillsAnIdlePool(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true, SpareReserve: 0.5}, func() int { return 4 }, clk.Now)
	var held []*Ticket
	for i := range 4 {
		tk, err := q.Acquire(context.Background(), Request{Tenant: "batch", Class: Batch, Spare: true})
		if err != nil {
			t.Fatalf("spare %d on an idle pool: %v", i, err)
		}
		held = append(held, tk)
	}
	if q.Spare() != 0 {
		t.Fatalf("Spare() = %d on a full pool", q.Spare())
	}
	for _, tk := range held {
		tk.Release()
	}
}

func sumRejected(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// TestUnmeasuredSpareTeachesNoDrainRate: a hedge's spare ticket, held for a
// few milliseconds until its race ends, must not make the pool look as if
// it drained hundreds of requests a second; an ordinary ticket held as
// briefly does (the control).
func TestUnmeasuredSpareTeachesNoDrainRate(t *testing.T) {
	drainAfterBriefHold := func(unmeasured bool) float64 {
		clk := newFakeClock()
		q := NewQueue(QueueConfig{Name: "m", PriorSlotRate: 1, DrainSamples: 4}, func() int { return 4 }, clk.Now)
		before := q.Stats().DrainRate
		for range 4 {
			tk, err := q.Acquire(context.Background(), Request{Tenant: "h", Spare: true, Unmeasured: unmeasured})
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(5 * time.Millisecond)
			tk.Release()
		}
		return q.Stats().DrainRate - before
	}
	if d := drainAfterBriefHold(true); d != 0 {
		t.Fatalf("unmeasured spare tickets moved the drain rate by %g/s; want 0", d)
	}
	if d := drainAfterBriefHold(false); d <= 0 {
		t.Fatalf("measured brief tickets moved the drain rate by %g/s; the control should raise it", d)
	}
}

// A spare ticket (a hedge racing) is no tenant's share: a client alone in
// the pool whose request cannot wait in time is refused as saturated
// (503), not as over its share (429), while one races.
func TestSpareTicketIsNoShare(t *testing.T) {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(2).get, clk.Now)
	hedge := grantedT(t, q, Request{Tenant: "(hedges)", Cost: 100, Spare: true, Preempt: func() {}, Unmeasured: true})
	live := grantedT(t, q, Request{Tenant: "a", Cost: 100})
	// The next live arrival preempts the hedge (it releases later) and
	// queues; the one after finds the hedge still holding its slot.
	queued := submitT(t, q, Request{Tenant: "a", Cost: 100})
	rej := refuse(t, q, Request{Tenant: "a", Cost: 100, Deadline: clk.Now().Add(time.Millisecond)})
	if rej.Reason != Saturated {
		t.Fatalf("refused as %v with a hedge racing; want saturated: the client is alone in the pool", rej.Reason)
	}
	hedge.Release()
	if queued.state != granted {
		t.Fatal("the queued request was not granted the hedge's slot")
	}
	queued.ticket.Release()
	live.Release()
}
