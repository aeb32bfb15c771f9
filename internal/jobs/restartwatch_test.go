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
func TestBatchAcrossRecoveryRestartCompletes(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, RecoverEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	o := testOptions(e.ClientURL())
	o.Embedded = e
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

	e.noteServerLine("Critical write error: test")
	if !e.TryRecover() {
		t.Fatalf("not recovered: %v", e.StoreFault())
	}
	close(release)
	// nats.go's own reset of an idle ordered consumer comes after two of
	// its 5 s heartbeat checks, 10 s after the drop at best (19.9 s here
	// before the fix; 0.3 s after): a bound under it and 30 times the
	// fixed path's time tells the two apart on a loaded machine too.
	const bound = 9 * time.Second
	var done *Batch
	deadline := time.Now().Add(bound)
	for {
		done, err = s.Batch(ctx, "acme", b.ID) // unavailable while reconnecting
		if err == nil && done.Status == batchCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not completed %s after the restart: %+v, %v", bound, done, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if done.RequestCounts != (BatchCounts{Total: 2, Completed: 2}) {
		t.Errorf("request counts %+v; want 2 of 2 completed", done.RequestCounts)
	}
	if calls.Load() != 2 {
		t.Errorf("%d executions; want 2", calls.Load())
	}
}
