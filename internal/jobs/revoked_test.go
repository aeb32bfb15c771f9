package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// A job the gateway refuses with ErrRevoked (its tenant's last API key
// was removed by a reload) ends failed with api_key_revoked, not run and
// not retried; its batch is cancelled, so the batch's other lines end
// batch_cancelled without reaching the executor, and the batch ends
// cancelled with every line in its error file. Another tenant's work runs.
// Before, ErrRevoked was a failed attempt like any error: the job ran
// again until max_attempts dead-lettered it, and each batch line did the
// same.
func TestRevokedJobsEndUnrun(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	single, _, err := s.Submit(ctx, spec("gone"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBatch(ctx, batchSpec("gone", 10))
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := s.Submit(ctx, spec("kept"))
	if err != nil {
		t.Fatal(err)
	}
	var goneCalls, keptCalls atomic.Int64
	// One slot: each job is handled after the last one's outcome is
	// written, so the batch is cancelled before its second line is taken.
	startWorker(t, s, WorkerOptions{Concurrency: 1, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		if j.Tenant == "gone" {
			goneCalls.Add(1)
			return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrRevoked)
		}
		keptCalls.Add(1)
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	eventually(t, "the kept tenant's job", func() bool { return mustJob(t, s, "kept", kept.ID).Status == StatusSucceeded })
	eventually(t, "the revoked job", func() bool { return mustJob(t, s, "gone", single.ID).Status.Terminal() })
	j := mustJob(t, s, "gone", single.ID)
	if j.Status != StatusFailed || j.Error == nil || j.Error.Code != CodeRevoked || j.Result != nil || j.Attempts != 0 {
		t.Fatalf("revoked job = %+v (error %+v), want failed api_key_revoked, no result, 0 attempts", j, j.Error)
	}
	done := waitBatch(t, s, "gone", b.ID, batchCancelled)
	if done.CancellingAt == nil || done.CancelledAt == nil || done.RequestCounts != (BatchCounts{Total: 10, Completed: 0, Failed: 10}) ||
		done.OutputFileID != nil || done.ErrorFileID == nil {
		t.Fatalf("batch = %+v", done)
	}
	codes := map[string]int{}
	for _, l := range readLines(t, s, "gone", done.ErrorFileID) {
		if l.Error == nil || l.Response != nil {
			t.Fatalf("error line = %+v", l)
		}
		codes[l.Error.Code]++
	}
	if codes[CodeRevoked] != 1 || codes["batch_cancelled"] != 9 {
		t.Fatalf("error file codes %v, want 1 %s (the line the gateway refused) and 9 batch_cancelled", codes, CodeRevoked)
	}
	if goneCalls.Load() != 2 || keptCalls.Load() != 1 {
		t.Fatalf("executions: %d of the revoked tenant (want 2: the job and the batch's first line), %d of the kept (want 1)",
			goneCalls.Load(), keptCalls.Load())
	}
	if st := s.Stats(); st.Revoked != 2 || st.DeadLettered != 0 {
		t.Fatalf("stats %+v, want 2 revoked, 0 dead-lettered", st)
	}
}

// A remote worker tells the gateway's refusal of a revoked job (410 with
// code api_key_revoked) from an answer: ErrRevoked. A 410 with another
// code is an answer like any other, stored as the job's result.
func TestHTTPExecutorTellsARevokedJob(t *testing.T) {
	for _, c := range []struct {
		body    string
		revoked bool
	}{
		{`{"error":{"message":"m","type":"invalid_request_error","param":null,"code":"api_key_revoked"}}`, true},
		{`{"error":{"message":"gone","type":"invalid_request_error","param":null,"code":"model_gone"}}`, false},
	} {
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(StatusRevoked)
			_, _ = w.Write([]byte(c.body))
		}))
		e := &HTTPExecutor{Admin: gw.URL, Token: "t"}
		res, err := e.Execute(context.Background(), &Job{ID: "job_1", Tenant: "acme", Path: "/v1/chat/completions", Body: []byte(`{}`)})
		gw.Close()
		if got := errors.Is(err, ErrRevoked); got != c.revoked {
			t.Errorf("%s: ErrRevoked %v (err %v), want %v", c.body, got, err, c.revoked)
		}
		if !c.revoked && (err != nil || res.StatusCode != StatusRevoked || string(res.Body) != c.body) {
			t.Errorf("%s: %d %s %v, want the answer as the result", c.body, res.StatusCode, res.Body, err)
		}
	}
}

// A batch whose every line a worker has taken when the gateway refuses
// them (a small batch, free slots: no line left queued to cancel) ends
// cancelled as a larger one does, each line api_key_revoked. Before, the
// lines' failures were written before the cancel, the tracker could see
// every line ended first and finalize the batch, and the cancel found it
// finalizing: through the binary, 5 lines under a worker of 16 slots
// ended "completed", 0 of 5 completed, cancelling_at null.
func TestRevokedSmallBatchEndsCancelled(t *testing.T) {
	const lines = 3
	s, _ := newStore(t, nil)
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("gone", lines))
	if err != nil {
		t.Fatal(err)
	}
	// Every line running at once before any is refused.
	var taken sync.WaitGroup
	taken.Add(lines)
	startWorker(t, s, WorkerOptions{Concurrency: lines, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		taken.Done()
		taken.Wait()
		return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrRevoked)
	})})
	var done *Batch
	eventually(t, "the batch's end", func() bool {
		done, err = s.Batch(ctx, "gone", b.ID)
		if err != nil {
			t.Fatal(err)
		}
		return done.Status == batchCancelled || done.Status == batchCompleted || done.Status == batchFailed
	})
	if done.Status != batchCancelled || done.CancellingAt == nil || done.RequestCounts != (BatchCounts{Total: lines, Failed: lines}) {
		t.Fatalf("batch ended %s (cancelling_at %v, counts %+v), want cancelled, %d failed", done.Status, done.CancellingAt, done.RequestCounts, lines)
	}
	for _, l := range readLines(t, s, "gone", done.ErrorFileID) {
		if l.Error == nil || l.Error.Code != CodeRevoked {
			t.Fatalf("error line %+v, want %s", l, CodeRevoked)
		}
	}
}
