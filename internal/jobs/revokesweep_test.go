package jobs

import (
	"context"
	"sync/atomic"
	"testing"
)

// The revocation sweep ends a revoked tenant's queued work with no worker
// running, in passes that each read a bounded number of records: its
// single jobs failed api_key_revoked (attempts 0), its batch cancelled
// with every line in the error file; another tenant's work stays queued.
// A second sweep finds nothing, and a worker started afterwards runs
// only the other tenant's jobs: the ended ones are acked unrun, and none
// is counted revoked twice.
func TestRevokeSweepEndsQueuedWorkOnceInBoundedPasses(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	var gone, kept []string
	for range 5 {
		j, _, err := s.Submit(ctx, spec("gone"))
		if err != nil {
			t.Fatal(err)
		}
		gone = append(gone, j.ID)
	}
	for range 2 {
		j, _, err := s.Submit(ctx, spec("kept"))
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, j.ID)
	}
	goneBatch, err := s.CreateBatch(ctx, batchSpec("gone", 4))
	if err != nil {
		t.Fatal(err)
	}
	keptBatch, err := s.CreateBatch(ctx, batchSpec("kept", 2))
	if err != nil {
		t.Fatal(err)
	}
	refuse := func(tenant string) bool { return tenant == "gone" }

	var place RevokeSweep
	var total RevokePass
	passes := 0
	for !total.Done {
		p, err := s.SweepRevoked(ctx, refuse, &place, 2)
		if err != nil {
			t.Fatal(err)
		}
		passes++
		total = RevokePass{Batches: total.Batches + p.Batches, Jobs: total.Jobs + p.Jobs, Done: p.Done}
		if passes > 100 {
			t.Fatal("the sweep does not end")
		}
	}
	// 13 messages (7 jobs, 6 batch lines) and 2 batches, 2 records a pass.
	if total.Batches != 1 || total.Jobs != 5 || passes < 7 {
		t.Fatalf("sweep: %+v in %d passes; want 1 batch, 5 jobs, at least 7 passes of 2 records", total, passes)
	}
	for _, id := range gone {
		if j := mustJob(t, s, "gone", id); j.Status != StatusFailed || j.Error == nil || j.Error.Code != CodeRevoked || j.Attempts != 0 {
			t.Fatalf("gone's job %s = %s %+v, want failed %s, 0 attempts", id, j.Status, j.Error, CodeRevoked)
		}
	}
	for _, id := range kept {
		if j := mustJob(t, s, "kept", id); j.Status != StatusQueued {
			t.Fatalf("kept's job %s = %s, want queued", id, j.Status)
		}
	}
	done := waitBatch(t, s, "gone", goneBatch.ID, batchCancelled)
	if done.RequestCounts != (BatchCounts{Total: 4, Failed: 4}) || done.ErrorFileID == nil || done.OutputFileID != nil {
		t.Fatalf("gone's batch = %+v", done)
	}
	codes := map[string]int{}
	for _, l := range readLines(t, s, "gone", done.ErrorFileID) {
		if l.Error == nil {
			t.Fatalf("error line = %+v", l)
		}
		codes[l.Error.Code]++
	}
	if codes["batch_cancelled"] != 4 {
		t.Fatalf("error file codes %v, want 4 batch_cancelled", codes)
	}
	if b, err := s.Batch(ctx, "kept", keptBatch.ID); err != nil || b.Status != batchInProgress {
		t.Fatalf("kept's batch = %+v %v, want in_progress", b, err)
	}

	again, err := s.SweepRevoked(ctx, refuse, &RevokeSweep{}, 100)
	if err != nil || again != (RevokePass{Done: true}) {
		t.Fatalf("a second sweep: %+v %v, want nothing ended", again, err)
	}
	var goneRuns, keptRuns atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		if j.Tenant == "gone" {
			goneRuns.Add(1)
		} else {
			keptRuns.Add(1)
		}
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	waitBatch(t, s, "kept", keptBatch.ID, batchCompleted)
	for _, id := range kept {
		eventually(t, "kept's job", func() bool { return mustJob(t, s, "kept", id).Status == StatusSucceeded })
	}
	if goneRuns.Load() != 0 || keptRuns.Load() != 4 {
		t.Fatalf("runs: gone %d, kept %d; want 0 and 4", goneRuns.Load(), keptRuns.Load())
	}
	if st := s.Stats(); st.Revoked != 5 {
		t.Fatalf("revoked counted %d, want 5 (each job once)", st.Revoked)
	}
}
