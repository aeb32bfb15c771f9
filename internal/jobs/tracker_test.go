package jobs

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
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

// A tracker that read a batch still validating past CreateTimeout, while
// its creator was making it in_progress, took the no-op of its failing
// write (the batch had left validating) for the batch's end: it dropped
// the batch from the active index, and no tracker looked at it again. It
// never expired or finished (TestBatchCancelledAndExpiredEvents failed so
// about 1 run in 20 under load: the test moves its clock an hour on as
// CreateBatch returns). Now the evaluation leaves it to the next, which
// sees it in progress. The clock makes the creator finish between the
// actor's read and its write: the read is followed by the first now() of
// the evaluation.
func TestTrackerKeepsBatchItsCreatorFinishesDuringTimeoutCheck(t *testing.T) {
	clk := newClock()
	var mu sync.Mutex
	var finishCreation func() // run once, by the actor's first now()
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.NoTracker = true // the actor below is the only one
	o.Now = func() time.Time {
		if calledFrom("(*actor).evaluate") {
			mu.Lock()
			f := finishCreation
			finishCreation = nil
			mu.Unlock()
			if f != nil {
				f()
			}
		}
		return clk.Now()
	}
	s := openStore(t, o)
	ctx := context.Background()
	id := "batch_00000000000fcafef00d"
	key := batchKey("acme", id)
	rec, _ := json.Marshal(&batchRecord{Tenant: "acme", Batch: Batch{ID: id, Object: "batch", Status: batchValidating,
		CreatedAt: clk.Now().Unix(), ExpiresAt: ptr(clk.Now().Add(24 * time.Hour).Unix()), RequestCounts: BatchCounts{Total: 1}}})
	if _, err := s.batch.Create(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.batch.Put(ctx, activeKey(id), []byte(key)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(s.o.CreateTimeout + time.Second)
	finishCreation = func() {
		if _, _, err := s.updateBatch(ctx, key, func(r *batchRecord) error {
			r.Batch.Status, r.Batch.InProgressAt = batchInProgress, ptr(clk.Now().Unix())
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	a := &actor{s: s, id: id, key: key, nudge: make(chan struct{}, 1), done: make(chan struct{}), jobs: map[int]*jobState{}}
	finished := a.evaluate(ctx)
	if finishCreation != nil {
		t.Fatal("the evaluation did not read the clock after reading the batch")
	}
	b, err := s.Batch(ctx, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	_, indexErr := s.batch.Get(ctx, activeKey(id))
	if finished || indexErr != nil || b.Status != batchInProgress {
		t.Fatalf("evaluation finished=%v, batch %s, its index entry: %v; want unfinished, in_progress, indexed",
			finished, b.Status, indexErr)
	}
}

// calledFrom reports whether a function whose name ends with fn is on
// the caller's stack.
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}
