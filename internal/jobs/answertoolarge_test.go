package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A run whose answer is over the bound it holds in memory fails as any
// error does (retried, then dead-lettered) and is counted apart:
// sluice_jobs_answers_too_large_total, once per such attempt; another
// failure is not counted there. Before, nothing told these from backends
// failing.
func TestAnswersTooLargeAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := newStore(t, func(o *Options) { o.MaxAttempts, o.Registerer = 2, reg })
	ctx := context.Background()
	big, _, err := s.Submit(ctx, spec("big"))
	if err != nil {
		t.Fatal(err)
	}
	broken, _, err := s.Submit(ctx, spec("broken"))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, s, WorkerOptions{Concurrency: 1, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		if j.Tenant == "big" {
			return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrAnswerTooLarge)
		}
		return Result{}, errors.New("backend went away")
	})})
	eventually(t, "both jobs dead-lettered", func() bool {
		return mustJob(t, s, "big", big.ID).Status == StatusFailed && mustJob(t, s, "broken", broken.ID).Status == StatusFailed
	})
	if st := s.Stats(); st.AnswersTooLarge != 2 || st.DeadLettered != 2 {
		t.Fatalf("stats %+v; want 2 answers too large (both attempts of one job) of 2 jobs dead-lettered", st)
	}
	want := "# HELP sluice_jobs_answers_too_large_total Job executions whose answer was over the most a job's run holds in memory (64 MiB): failed attempts, retried then dead-lettered as any other.\n# TYPE sluice_jobs_answers_too_large_total counter\nsluice_jobs_answers_too_large_total 2\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_jobs_answers_too_large_total"); err != nil {
		t.Fatal(err)
	}
}

// A separate worker's run (HTTPExecutor) over MaxBody fails with
// ErrAnswerTooLarge, as the gateway's own does, so it is counted too.
func TestHTTPExecutorAnswerOverItsBound(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"x":"%s"}`, strings.Repeat("a", 2048))
	}))
	t.Cleanup(gw.Close)
	e := &HTTPExecutor{Admin: gw.URL, Token: "t", MaxBody: 1024}
	if _, err := e.Execute(context.Background(), &Job{ID: "job_1", Tenant: "acme", Path: "/v1/chat/completions", Body: []byte(`{}`)}); !errors.Is(err, ErrAnswerTooLarge) {
		t.Fatalf("a 2 KiB answer over a 1 KiB bound: %v; want ErrAnswerTooLarge", err)
	}
	e.MaxBody = 4096
	if res, err := e.Execute(context.Background(), &Job{ID: "job_1", Tenant: "acme", Path: "/v1/chat/completions", Body: []byte(`{}`)}); err != nil || res.StatusCode != 200 {
		t.Fatalf("within the bound: %d %v", res.StatusCode, err)
	}
}
