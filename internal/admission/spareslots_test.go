package admission

import (
	"context"
	"errors"
	"testing"
)

// spareSlotsQueue is a pool whose limits allow 18 requests (an engine's 16
// slots and its handover of 2), of which the engine runs 16 at once
// (SpareCapacity), with a reserve of a tenth.
func spareSlotsQueue() *Queue {
	return NewQueue(QueueConfig{Name: "m", Fair: true, SpareReserve: 0.1, SpareCapacity: func() int { return 16 }},
		func() int { return 18 }, newFakeClock().Now)
}

// grantSpare takes spare tickets of kind hedge until one is refused
// (at most 20); preempted collects the index of each one taken back.
func grantSpare(t *testing.T, q *Queue, hedge bool, preempted *[]int) []*Ticket {
	t.Helper()
	var held []*Ticket
	for i := range 20 {
		r := Request{Tenant: "batch", Class: Batch, Spare: true, Hedge: hedge, Preempt: func() { *preempted = append(*preempted, i) }}
		if hedge {
			r = Request{Tenant: "(hedges)", Spare: true, Hedge: true, Unmeasured: true, Preempt: func() { *preempted = append(*preempted, i) }}
		}
		tk, err := q.Acquire(context.Background(), r)
		if errors.Is(err, ErrNoSpare) {
			return held
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
	}
	return held
}

func acquireLive(t *testing.T, q *Queue) *Ticket {
	t.Helper()
	tk, err := q.Acquire(context.Background(), Request{Tenant: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestJobsLeaveTheHandoverToLiveTraffic: jobs fill no more than the 16
// slots the engine runs at once less the reserve, sized against the 16; a
// live request granted past the 16 (it would wait in the engine's own
// queue) preempts the youngest job at once, as one that finds the pool
// full does, and passes over a hedge younger than it. Hedges still take
// the handover. Before, jobs filled 18 less a reserve of the 18, and live
// requests granted into the handover waited in the engine's queue behind
// them, preempting nothing (docs/BENCHMARKS.md §7h, §7i).
func TestJobsLeaveTheHandoverToLiveTraffic(t *testing.T) {
	q := spareSlotsQueue()
	held := []*Ticket{acquireLive(t, q)}
	var jobsOut, hedgesOut []int
	jobs := grantSpare(t, q, false, &jobsOut)
	held = append(held, jobs...)
	// 16 slots less a reserve of ceil(0.1 x 16) = 2, one live in flight.
	if len(jobs) != 13 {
		t.Fatalf("jobs granted beside one live request: %d, want 13 (16 slots - 2 reserved - 1 live)", len(jobs))
	}
	if got := q.Spare(); got != 0 {
		t.Fatalf("Spare() = %d with the engines' slots less the reserve in use, want 0", got)
	}
	// A hedge is not held to the 16: 18 less a reserve of 2, 14 in use.
	hedges := grantSpare(t, q, true, &hedgesOut)
	held = append(held, hedges...)
	if len(hedges) != 2 {
		t.Fatalf("hedges granted beside 13 jobs and a live request: %d, want 2 (18 - 2 reserved - 14)", len(hedges))
	}
	// 16 in use. A live request past the 16, into the handover: the
	// youngest job is taken back at once, not the younger hedges.
	held = append(held, acquireLive(t, q))
	if len(jobsOut) != 1 || jobsOut[0] != 12 || len(hedgesOut) != 0 {
		t.Fatalf("live request past the engines' slots: jobs preempted %v, hedges %v; want the youngest job [12] and no hedge", jobsOut, hedgesOut)
	}
	if got := q.Preempted(); got != 1 {
		t.Fatalf("Preempted() = %d, want 1", got)
	}
	for _, tk := range held {
		tk.Release()
	}
}

// TestHedgesKeepTheHandover: without jobs, the queue with SpareCapacity
// grants hedges as it did before it: up to the whole capacity (18) less a
// reserve sized against it, and live requests granted into the handover
// take none back (one that finds the pool full still preempts the
// youngest, as before). In §7h, keeping hedges out of the handover skipped hedges for
// capacity 185 -> 490 at 4x.
func TestHedgesKeepTheHandover(t *testing.T) {
	q := spareSlotsQueue()
	held := []*Ticket{acquireLive(t, q)}
	var out []int
	hedges := grantSpare(t, q, true, &out)
	held = append(held, hedges...)
	if len(hedges) != 15 {
		t.Fatalf("hedges granted beside one live request: %d, want 15 (18 - 2 reserved - 1 live)", len(hedges))
	}
	held = append(held, acquireLive(t, q), acquireLive(t, q)) // 18: into the handover
	if len(out) != 0 {
		t.Fatalf("live requests within the capacity preempted hedges %v", out)
	}
	for _, tk := range held {
		tk.Release()
	}
}

// TestTakeBackCountsJobsStillStopping: a job taken back for a live
// request past the engines' slots holds its slot until its request has
// aborted. Live requests that come and go meanwhile, one at a time, fit
// in the slot it is giving back: none takes another job. On the merged
// batchjobs code each of them preempted one more (three short live
// requests in a row, one at a time, stopped three of 16 jobs where one
// made room), so moderate live traffic during a slow abort emptied the
// batch's slots one job per live request.
func TestTakeBackCountsJobsStillStopping(t *testing.T) {
	q := spareSlotsQueue()
	var out []int
	jobs := grantSpare(t, q, false, &out)
	if len(jobs) != 16 { // no live request in flight: no reserve
		t.Fatalf("jobs granted on an idle pool: %d, want 16", len(jobs))
	}
	for range 3 {
		acquireLive(t, q).Release() // 17 in use: past the 16 slots
	}
	if len(out) != 1 || out[0] != 15 {
		t.Fatalf("three live requests one at a time while the first job taken back is still stopping: preempted %v, want [15]", out)
	}
	jobs[15].Release() // its abort done: the slot is free
	live := acquireLive(t, q)
	if len(out) != 1 {
		t.Fatalf("a live request within the slots after the taken-back job left preempted %v, want [15]", out)
	}
	// Past the slots again: one more job is taken back.
	live2 := acquireLive(t, q)
	if len(out) != 2 || out[1] != 14 {
		t.Fatalf("a live request past the slots: preempted %v, want [15 14]", out)
	}
	for _, tk := range append(jobs, live, live2) {
		tk.Release()
	}
	if got := q.Spare(); got != 16 {
		t.Fatalf("Spare() on an idle pool after every ticket came back = %d, want 16 (a ticket leaked)", got)
	}
}
