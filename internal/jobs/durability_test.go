package jobs

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestJobsSurviveServerRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, testOptions(srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		j, _, err := s.Submit(ctx, spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	b, err := s.CreateBatch(ctx, batchSpec("acme", 5))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()

	srv2 := startServer(t, dir) // same store directory, new port
	s2 := openStore(t, testOptions(srv2.ClientURL()))
	for _, id := range ids {
		if j := mustJob(t, s2, "acme", id); j.Status != StatusQueued {
			t.Fatalf("job %s is %s after restart", id, j.Status)
		}
	}
	var calls atomic.Int64
	startWorker(t, s2, WorkerOptions{Executor: okExec(&calls)})
	for _, id := range ids {
		eventually(t, "job after restart", func() bool { return mustJob(t, s2, "acme", id).Status == StatusSucceeded })
	}
	done := waitBatch(t, s2, "acme", b.ID, batchCompleted)
	if done.RequestCounts.Completed != 5 || len(readLines(t, s2, "acme", done.OutputFileID)) != 5 {
		t.Fatalf("batch after restart = %+v", done)
	}
	if calls.Load() != 8 {
		t.Fatalf("%d executions, want 8", calls.Load())
	}
}
