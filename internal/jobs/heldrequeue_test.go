package jobs

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// TestRequeueHeldOnFullStore: a job whose attempt ends in a busy 503 or
// an error while the store is at its hard bound, so that the write
// sending it back to the queue is refused, is not taken for one whose
// worker was lost. The worker keeps its message (for two AckWaits: one
// delivery, one message held, one execution; the job running with its
// attempt, not dead-lettered) and writes the requeue once deletes free
// space; the job then runs again and succeeds with the attempts its
// answers earned: on its last attempt after a 503 (which counts none),
// on its second after an error (which counts one, its cause recorded).
// Without the hold the message came back after one AckWait and the
// redelivery counted another attempt: the 503 job was dead-lettered as
// "worker lost".
func TestRequeueHeldOnFullStore(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxAttempts  int
		first        func() (Result, error)
		wantAttempts int
		wantLastErr  string
	}{
		{name: "busy on its last attempt", maxAttempts: 1, wantAttempts: 1,
			first: func() (Result, error) { return Result{StatusCode: 503, Body: []byte(`{}`)}, nil }},
		{name: "failed attempt", maxAttempts: 2, wantAttempts: 2, wantLastErr: "backend went away",
			first: func() (Result, error) { return Result{}, errors.New("backend went away") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startBoundedServer(t, 256<<10)
			reg := prometheus.NewRegistry()
			o := testOptions(srv.ClientURL())
			o.MaxFileBytes, o.AckWait, o.MaxAttempts, o.Registerer = 64<<10, heldAckWait, tc.maxAttempts, reg
			s := openStore(t, o)
			ctx := context.Background()
			var files []*File
			for range 2 {
				f, err := s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader(bytes.Repeat([]byte("x"), 40<<10)))
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, f)
			}
			job, _, err := s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)})
			if err != nil {
				t.Fatal(err)
			}
			started, release, answered := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
			var calls atomic.Int64
			startWorker(t, s, WorkerOptions{PollWait: 20 * time.Millisecond,
				Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
					if calls.Add(1) == 1 {
						started <- struct{}{}
						<-release
						defer close(answered)
						return tc.first()
					}
					return Result{StatusCode: 200, RequestID: "req-" + j.ID, Body: []byte(`{"ok":true}`)}, nil
				})})
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("the job did not start")
			}
			fillStore(t, s)
			close(release)
			// The worker's requeue write follows the answer: the store
			// refuses it.
			<-answered

			// Two AckWaits with the requeue refused: without holding, the
			// message came back after one, taken for a lost worker's.
			until := time.Now().Add(2 * s.o.AckWait)
			for time.Now().Before(until) {
				if info := workQueueInfo(t, s); info.Delivered.Consumer != 1 || info.NumAckPending != 1 {
					t.Fatalf("while the requeue is refused: %d deliveries, %d messages held; want 1 each",
						info.Delivered.Consumer, info.NumAckPending)
				}
				time.Sleep(50 * time.Millisecond) // observing, not synchronising: nothing should happen
			}
			if j := mustJob(t, s, "acme", job.ID); j.Status != StatusRunning || j.Attempts != 1 {
				t.Fatalf("job while its requeue is refused: %s, %d attempts; want running, 1", j.Status, j.Attempts)
			}
			if got := promtest.Value(t, reg, "sluice_jobs_workers_paused", ""); got != 1 {
				t.Errorf("sluice_jobs_workers_paused = %v while the requeue is refused, want 1", got)
			}

			for _, f := range files {
				if err := s.DeleteFile(ctx, "acme", f.ID); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "the job to finish", func() bool { return mustJob(t, s, "acme", job.ID).Status.Terminal() })
			j := mustJob(t, s, "acme", job.ID)
			if j.Status != StatusSucceeded || j.Attempts != tc.wantAttempts || j.Error != nil {
				t.Fatalf("job = %s, %d attempts, error %+v; want succeeded at attempt %d", j.Status, j.Attempts, j.Error, tc.wantAttempts)
			}
			rec, _, err := s.getJob(ctx, singleKey(job.ID))
			if err != nil {
				t.Fatal(err)
			}
			if rec.LastError != tc.wantLastErr {
				t.Errorf("last error %q, want %q", rec.LastError, tc.wantLastErr)
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("%d executions, want 2", n)
			}
			if st := s.Stats(); st.DeadLettered != 0 || st.Retried != 1 {
				t.Errorf("stats %+v; want nothing dead, one retry", st)
			}
			if got := promtest.Value(t, reg, "sluice_jobs_worker_requeues_refused_total", ""); got < 1 {
				t.Errorf("sluice_jobs_worker_requeues_refused_total = %v, want at least 1", got)
			}
			if got := promtest.Value(t, reg, "sluice_jobs_workers_paused", ""); got != 0 {
				t.Errorf("sluice_jobs_workers_paused = %v after space freed, want 0", got)
			}
		})
	}
}
