package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// An idle tracker learns of a batch started by another process from its
// watch on the active-batch index, not from a periodic listing (which
// cost an idle gateway a consumer created and deleted on the NATS server
// every TrackInterval, issue 12). TrackInterval is an hour here: a tracker
// that waited for its next scan would not finalize the batch in time.
func TestIdleTrackerSeesBatchStartedElsewhere(t *testing.T) {
	srv := startServer(t, t.TempDir())
	to := testOptions(srv.ClientURL())
	to.TrackInterval = time.Hour
	tracker := openStore(t, to)
	wo := testOptions(srv.ClientURL())
	wo.NoTracker = true
	workerOnly := openStore(t, wo)
	var calls atomic.Int64
	startWorker(t, workerOnly, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	ctx := context.Background()

	// A batch of its own (the tracker is nudged) takes it through a scan
	// and into its wait.
	first, err := tracker.CreateBatch(ctx, batchSpec("acme", 2))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, tracker, "acme", first.ID, batchCompleted)

	// One started by a process without a tracker: nothing nudges it.
	b, err := workerOnly.CreateBatch(ctx, batchSpec("acme", 3))
	if err != nil {
		t.Fatal(err)
	}
	done := waitBatch(t, tracker, "acme", b.ID, batchCompleted)
	if done.RequestCounts.Completed != 3 || calls.Load() != 5 {
		t.Fatalf("batch = %+v after %d executions, want 3 completed after 5", done, calls.Load())
	}
}
