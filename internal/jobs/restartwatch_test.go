package jobs

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatchAcrossRecoveryRestartCompletes: a batch of two requests, one
// of them running while a disk fault's recovery restarts the embedded
// server. Its tracker's actor watches the batch's job records through
// an ordered consumer, which the old server took with it: before, the
// job that ended just after the restart reached the actor only when
// nats.go reset the idle watch by itself (19.9 s here; never sooner than
// 5 s), and the tracker's scan waited out a listing caught by the drop.
// Now every watch ends with the connection it was made on and is made
// again on the next, the scan is bound to the connection: the batch
// completes within 0.3 s of the restart, each request run once.
//
// What is waited on is the events, not a time: the batch's watch made
// again after the restart (the old code never makes it: its actor keeps
// the dead watch, and the batch completes only through nats.go's reset),
// then the batch's completion. A minute bounds each wait only to end a
// test that would hang; a loaded machine slows it, it does not fail it.
// (It had a 9 s bound on the completion, under nats.go's reset, 10 s at
// best: that told the two apart by time alone.)
func TestBatchAcrossRecoveryRestartCompletes(t *testing.T) {
	const hangGuard = time.Minute
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, RecoverEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	o := testOptions(e.ClientURL())
	o.Embedded = e
	var watches atomic.Int64
	watched := make(chan struct{}, 1)
	o.batchWatched = func(string) {
		watches.Add(1)
		select {
		case watched <- struct{}{}:
		default:
		}
	}
	s := openStore(t, o)
	ctx := context.Background()

	var calls atomic.Int64
	running, release := make(chan struct{}, 1), make(chan struct{})
	exec := execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		if strings.Contains(string(j.Body), `"n":1`) {
			running <- struct{}{}
			<-release
		}
		return Result{StatusCode: 200, RequestID: "req-" + j.ID, Body: []byte(`{"ok":true}`)}, nil
	})
	b, err := s.CreateBatch(ctx, batchSpec("acme", 2))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, s, WorkerOptions{Concurrency: 2, Classes: []string{"batch"}, Executor: exec})
	<-running
	// The other request done and seen by the batch's actor: its watch is
	// up before the restart.
	eventually(t, "one request counted", func() bool {
		got, err := s.Batch(ctx, "acme", b.ID)
		return err == nil && got.RequestCounts.Completed == 1
	})
	before := watches.Load()
	for len(watched) > 0 { // the watches made so far
		<-watched
	}

	e.noteServerLine("Critical write error: test")
	if !e.TryRecover() {
		t.Fatalf("not recovered: %v", e.StoreFault())
	}
	close(release)
	select {
	case <-watched:
	case <-time.After(hangGuard):
		t.Fatalf("the batch's job records not watched again %s after the restart (%d watches before it, %d now): its actor kept the watch the old server took with it",
			hangGuard, before, watches.Load())
	}
	var done *Batch
	deadline := time.Now().Add(hangGuard)
	for {
		done, err = s.Batch(ctx, "acme", b.ID) // unavailable while reconnecting
		if err == nil && done.Status == batchCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not completed %s after the restart: %+v, %v", hangGuard, done, err)
		}
		time.Sleep(10 * time.Millisecond) // a poll of the record: Batch has no completion event
	}
	if done.RequestCounts != (BatchCounts{Total: 2, Completed: 2}) {
		t.Errorf("request counts %+v; want 2 of 2 completed", done.RequestCounts)
	}
	if calls.Load() != 2 {
		t.Errorf("%d executions; want 2", calls.Load())
	}
}
