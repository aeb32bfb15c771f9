package jobs

import (
	"context"
	"sync/atomic"
	"testing"
)

// A worker whose class's consumer is deleted under it (as a NATS server
// restarted on a store without it leaves it) makes the consumer again and
// runs the class's jobs; before, its pulls were answered 503 for good and
// the job submitted after the deletion stayed queued.
func TestWorkerMakesAGoneConsumerAgain(t *testing.T) {
	srv := startServer(t, t.TempDir())
	s := openStore(t, testOptions(srv.ClientURL()))
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	ctx := context.Background()
	first, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first job", func() bool { return mustJob(t, s, "acme", first.ID).Status == StatusSucceeded })
	for _, class := range []string{"interactive", "batch"} {
		if err := s.js.DeleteConsumer(ctx, workStream, consumerName(class)); err != nil {
			t.Fatal(err)
		}
	}
	second, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job submitted after the consumer was deleted", func() bool {
		return mustJob(t, s, "acme", second.ID).Status == StatusSucceeded
	})
	b, err := s.CreateBatch(ctx, batchSpec("acme", 3))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d executions, want 5", n)
	}
	eventually(t, "no class down", func() bool { return s.ClassesDown() == "" })
}
