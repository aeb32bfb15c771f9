package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSubmitStalledPastOrphanDropStillRuns: a submit publishes its job's
// message and stalls before it writes the record; a worker drops the
// message once it has waited orphanGrace for a record (simulated here by
// deleting it, as the worker's Ack does, and by moving the store's clock
// on by orphanGrace). The submit, resumed, writes its record. Before, it
// answered with a queued job no message would ever run: the client got
// 202 for work that never happened. Now a submit whose record came
// republishAfter or more after its publish sends the message once more,
// and the job runs once.
func TestSubmitStalledPastOrphanDropStillRuns(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, func(o *Options) { o.Now = clk.Now })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	published := make(chan string, 1)
	gate := make(chan struct{})
	s.enqueued = func(id string) {
		published <- id
		<-gate
	}
	done := submitAsync(ctx, s, spec("acme"))
	var id string
	select {
	case id = <-published:
	case r := <-done:
		t.Fatalf("the submit returned before its publish hook: %+v %v", r.j, r.err)
	}
	work, err := s.js.Stream(ctx, workStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := work.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%d messages after the publish, want 1", info.State.Msgs)
	}
	// The worker's orphan drop: a minute on, the message goes.
	if err := work.DeleteMsg(ctx, info.State.LastSeq); err != nil {
		t.Fatal(err)
	}
	clk.Advance(orphanGrace)
	close(gate)
	r := <-done
	if r.err != nil || r.existing || r.j == nil || r.j.ID != id {
		t.Fatalf("the stalled submit, resumed: %+v existing=%v %v; want job %s made", r.j, r.existing, r.err, id)
	}
	if info, err = work.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("job %s is queued with %d messages in the work stream, want 1: no worker will ever run it", id, info.State.Msgs)
	}
	var ran sync.Map
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: recordBodies(&ran, &calls)})
	eventually(t, "the job to succeed", func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
	if calls.Load() != 1 {
		t.Fatalf("job %s ran %d times, want once", id, calls.Load())
	}
}
