package jobs

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// The tracker's per-line state is exported: the lines of the batches it
// follows by state, the batches it follows, and the bound of what it may
// hold. Before, an operator saw sluice_jobs_active_batches and nothing of
// the up to 50,000 states a batch holds in every tracker's memory, nor a
// batch's progress. A batch of 10 lines: 6 answered 200, 2 answered 400,
// 2 held running; then released, the batch ends and the lines go.
func TestTrackerLinesByState(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := newStore(t, func(o *Options) { o.Registerer = reg; o.MaxActiveBatches = 3 })
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 10))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	startWorker(t, s, WorkerOptions{Concurrency: 4, Classes: []string{"batch"}, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		var body struct{ N int }
		_ = json.Unmarshal(j.Body, &body)
		switch {
		case body.N >= 8:
			select {
			case <-release:
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		case body.N >= 6:
			return Result{StatusCode: 400, RequestID: "r", Body: []byte(`{"error":{"message":"bad"}}`)}, nil
		}
		return Result{StatusCode: 200, RequestID: "r", Body: []byte(`{}`)}, nil
	})})
	lines := func(state string) float64 { return promtest.Value(t, reg, "sluice_jobs_batch_lines", state) }
	eventually(t, "6 lines completed, 2 failed, 2 running", func() bool {
		return lines("completed") == 6 && lines("failed") == 2 && lines("running") == 2
	})
	if q, c := lines("queued"), lines("cancelled"); q != 0 || c != 0 {
		t.Errorf("queued %v, cancelled %v; want 0 and 0", q, c)
	}
	if n := promtest.Value(t, reg, "sluice_jobs_tracked_batches", ""); n != 1 {
		t.Errorf("tracked batches %v, want 1", n)
	}
	if n := promtest.Value(t, reg, "sluice_jobs_batch_lines_limit", ""); n != 3*DefaultMaxBatchLines {
		t.Errorf("lines limit %v, want %d: max_active_batches times a batch's most lines", n, 3*DefaultMaxBatchLines)
	}
	close(release)
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	eventually(t, "the finished batch's lines let go", func() bool {
		sum := 0.0
		for _, st := range lineStateLabels {
			sum += lines(st)
		}
		return sum == 0 && promtest.Value(t, reg, "sluice_jobs_tracked_batches", "") == 0
	})
}
