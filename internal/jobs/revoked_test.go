package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
