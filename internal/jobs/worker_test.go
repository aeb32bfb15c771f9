package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// httpExec posts each job's body to an upstream, as the gateway does.
type httpExec struct{ url string }

func (h httpExec) Execute(ctx context.Context, j *Job) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url+j.Path, bytes.NewReader(j.Body))
	if err != nil {
		return Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Result{}, err
	}
	return Result{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Body: b}, nil
}

func TestWorkerExecutesThroughHTTP(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("X-Request-Id", "up-1")
		_ = json.NewEncoder(w).Encode(map[string]any{"echo": in["model"], "path": r.URL.Path})
	}))
	defer up.Close()
	reg := prometheus.NewRegistry()
	s, _ := newStore(t, func(o *Options) { o.Registerer = reg })
	ctx := context.Background()
	var ids []string
	for range 5 {
		j, _, err := s.Submit(ctx, spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: httpExec{up.URL}})
	for _, id := range ids {
		eventually(t, "job "+id, func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded })
		j := mustJob(t, s, "acme", id)
		if j.Attempts != 1 || j.Result == nil || j.Result.StatusCode != 200 || j.Result.RequestID != "up-1" ||
			!strings.Contains(string(j.Result.Body), `"echo":"m1"`) || j.StartedAt == 0 || j.FinishedAt == 0 {
			t.Fatalf("job = %+v, result %+v", j, j.Result)
		}
	}
	if hits.Load() != 5 || s.Stats().Executed != 5 {
		t.Fatalf("upstream hits %d, executed %d, want 5", hits.Load(), s.Stats().Executed)
	}
	want := "# HELP sluice_jobs_executed_total Job executions.\n# TYPE sluice_jobs_executed_total counter\nsluice_jobs_executed_total 5\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_jobs_executed_total"); err != nil {
		t.Fatal(err)
	}
}

func TestClosedStore(t *testing.T) {
	s, _ := newStore(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Submit(context.Background(), spec("acme")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
	if err := s.RunWorker(context.Background(), WorkerOptions{Executor: okExec(new(atomic.Int64))}); !errors.Is(err, ErrClosed) {
		t.Fatalf("RunWorker after Close: %v", err)
	}
}

func TestBusyAnswersRetryWithoutCountingAttempts(t *testing.T) {
	s, _ := newStore(t, nil)
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		switch calls.Add(1) {
		case 1:
			return Result{StatusCode: 503, Body: []byte(`{}`)}, nil
		case 2:
			return Result{StatusCode: 429, Body: []byte(`{}`)}, nil
		}
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	j, _, _ := s.Submit(context.Background(), spec("acme"))
	eventually(t, "success", func() bool { return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded })
	if got := mustJob(t, s, "acme", j.ID); got.Attempts != 1 || calls.Load() != 3 {
		t.Fatalf("attempts %d after %d calls, want 1 after 3", got.Attempts, calls.Load())
	}
	if s.Stats().Retried != 2 {
		t.Fatalf("retried %d, want 2", s.Stats().Retried)
	}
}

// A 502 (no backend gave an answer) is retried as a counted attempt; the
// last attempt's 502 is recorded as the job's answer, not dead-lettered.
func TestBadGatewayRetriesAsAnAttempt(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.MaxAttempts = 3 })
	ctx := context.Background()
	var calls atomic.Int64
	bad := Result{StatusCode: 502, Body: []byte(`{"error":{"message":"a backend sent a malformed answer","type":"server_error","param":null,"code":"upstream_bad_response"}}`)}
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		if n := calls.Add(1); j.Model == "flaky" && n > 1 {
			return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
		}
		return bad, nil
	})})
	flaky := spec("acme")
	flaky.Model = "flaky"
	fj, _, _ := s.Submit(ctx, flaky)
	eventually(t, "flaky job", func() bool { return mustJob(t, s, "acme", fj.ID).Status.Terminal() })
	if got := mustJob(t, s, "acme", fj.ID); got.Status != StatusSucceeded || got.Attempts != 2 {
		t.Fatalf("a job answered 502 then 200: %s after %d attempts, want succeeded after 2", got.Status, got.Attempts)
	}
	calls.Store(0)
	broken := spec("acme")
	broken.Model = "broken"
	bj, _, _ := s.Submit(ctx, broken)
	eventually(t, "broken job", func() bool { return mustJob(t, s, "acme", bj.ID).Status.Terminal() })
	got := mustJob(t, s, "acme", bj.ID)
	if got.Status != StatusFailed || got.Attempts != 3 || calls.Load() != 3 || got.Result == nil || got.Result.StatusCode != 502 {
		t.Fatalf("a job answered 502 every time: %+v after %d calls; want failed after 3 attempts with the last 502 as its result", got, calls.Load())
	}
	if s.Stats().DeadLettered != 0 {
		t.Fatalf("dead-lettered %d: a 502 answer is the job's result, not a lost job", s.Stats().DeadLettered)
	}
}

func TestErrorsRetryThenDeadLetter(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.MaxAttempts = 3 })
	ctx := context.Background()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		if j.Model == "flaky" && calls.Load() <= 2 {
			return Result{}, errors.New("connection reset")
		}
		if j.Model == "broken" {
			return Result{}, errors.New("upstream unreachable")
		}
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	flaky := spec("acme")
	flaky.Model = "flaky"
	fj, _, _ := s.Submit(ctx, flaky)
	eventually(t, "flaky job", func() bool { return mustJob(t, s, "acme", fj.ID).Status.Terminal() })
	if got := mustJob(t, s, "acme", fj.ID); got.Status != StatusSucceeded || got.Attempts != 3 {
		t.Fatalf("flaky job: %s after %d attempts, want succeeded after 3", got.Status, got.Attempts)
	}

	broken := spec("acme")
	broken.Model = "broken"
	bj, _, _ := s.Submit(ctx, broken)
	eventually(t, "broken job", func() bool { return mustJob(t, s, "acme", bj.ID).Status.Terminal() })
	got := mustJob(t, s, "acme", bj.ID)
	if got.Status != StatusFailed || got.Attempts != 3 || got.Error == nil || got.Error.Code != "max_attempts" ||
		got.Error.Message != deadMessage(3, bj.ID) || strings.Contains(got.Error.Message, "upstream unreachable") || got.Result != nil {
		t.Fatalf("dead-lettered job = %+v, error %+v", got, got.Error)
	}
	// The record is written dead first; the worker counts and publishes
	// the dead letter after (finished): waited for, not read at once.
	eventually(t, "the dead letter counted", func() bool { return s.Stats().DeadLettered >= 1 })
	if n := s.Stats().DeadLettered; n != 1 {
		t.Fatalf("dead-lettered %d, want 1", n)
	}
	m, err := s.js.Stream(ctx, deadStream)
	if err != nil {
		t.Fatal(err)
	}
	var raw *jetstream.RawStreamMsg
	eventually(t, "the dead letter published", func() bool {
		raw, err = m.GetLastMsgForSubject(ctx, deadSubjects+"interactive")
		return err == nil
	})
	var dead Job
	if err := json.Unmarshal(raw.Data, &dead); err != nil || dead.ID != bj.ID || dead.Status != StatusFailed {
		t.Fatalf("dead letter %s (%v)", raw.Data, err)
	}
}

func TestDuplicateDeliveryIsSkipped(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j, _, _ := s.Submit(ctx, spec("acme"))
	eventually(t, "job", func() bool { return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded })
	first := mustJob(t, s, "acme", j.ID)
	// A second message for the finished job, past the dedupe window's id.
	if _, err := s.js.Publish(ctx, workSubjects+"interactive", []byte(singleKey(j.ID)), jetstream.WithMsgID("dup")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the duplicate to be skipped", func() bool { return s.Stats().Duplicates == 1 })
	if calls.Load() != 1 {
		t.Fatalf("executed %d times, want 1", calls.Load())
	}
	if again := mustJob(t, s, "acme", j.ID); again.FinishedAt != first.FinishedAt || again.Attempts != 1 {
		t.Fatalf("record changed: %+v", again)
	}
}

func TestTwoStoresRunEachJobOnce(t *testing.T) {
	srv := startServer(t, t.TempDir())
	a := openStore(t, testOptions(srv.ClientURL()))
	b := openStore(t, testOptions(srv.ClientURL()))
	var calls atomic.Int64
	startWorker(t, a, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	startWorker(t, b, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	var ids []string
	for range 40 {
		j, _, err := a.Submit(context.Background(), spec("acme"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	for _, id := range ids {
		eventually(t, "job", func() bool { return mustJob(t, b, "acme", id).Status == StatusSucceeded })
	}
	if calls.Load() != 40 {
		t.Fatalf("executed %d times, want 40", calls.Load())
	}
}

func TestRedeliveryAfterWorkerDeath(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	// The survivor's delivery must not be redelivered in turn: its
	// heartbeats (every AckWait/4) keep it. At 1 s, heartbeats stalled for
	// 0.75 s on a loaded machine would let it come back and run twice; 3 s
	// leaves 2.25 s, for 2 s more of waiting on the dead worker's message.
	o.AckWait = 3 * time.Second
	dying := openStore(t, o)
	started := make(chan struct{}, 1)
	var dyingCalls atomic.Int64
	startWorker(t, dying, WorkerOptions{Grace: 100 * time.Millisecond, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		dyingCalls.Add(1)
		started <- struct{}{}
		<-ctx.Done() // hangs until its worker is stopped
		return Result{}, ctx.Err()
	})})
	j, _, _ := dying.Submit(context.Background(), spec("acme"))
	<-started
	if got := mustJob(t, dying, "acme", j.ID); got.Status != StatusRunning || got.Attempts != 1 {
		t.Fatalf("job = %+v", got)
	}
	dying.nc.Close() // the process dies: no ack, no nak, no heartbeats

	survivor := openStore(t, o)
	var calls atomic.Int64
	startWorker(t, survivor, WorkerOptions{Executor: okExec(&calls)})
	eventually(t, "the survivor to finish the job", func() bool {
		return mustJob(t, survivor, "acme", j.ID).Status == StatusSucceeded
	})
	got := mustJob(t, survivor, "acme", j.ID)
	if calls.Load() != 1 || dyingCalls.Load() != 1 || got.Attempts != 2 {
		t.Fatalf("survivor ran it %d times, dying worker %d, attempts %d; want 1, 1, 2",
			calls.Load(), dyingCalls.Load(), got.Attempts)
	}
}

func TestGateHoldsWork(t *testing.T) {
	s, _ := newStore(t, nil)
	g := newGate()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Gate: g, Executor: okExec(&calls)})
	j, _, _ := s.Submit(context.Background(), spec("acme"))
	eventually(t, "both slots at the gate", func() bool { return g.waiting.Load() == 2 })
	if calls.Load() != 0 || mustJob(t, s, "acme", j.ID).Status != StatusQueued {
		t.Fatal("a job ran through a closed gate")
	}
	g.release()
	eventually(t, "the job after the gate opened", func() bool {
		return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded
	})
}

func TestShutdownRequeuesUnfinishedJob(t *testing.T) {
	s, _ := newStore(t, nil)
	started := make(chan struct{}, 1)
	stop := startWorker(t, s, WorkerOptions{Grace: 50 * time.Millisecond, Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		return Result{}, ctx.Err()
	})})
	j, _, _ := s.Submit(context.Background(), spec("acme"))
	<-started
	stop()
	got := mustJob(t, s, "acme", j.ID)
	if got.Status != StatusQueued || got.Attempts != 0 {
		t.Fatalf("after shutdown: %s with %d attempts, want queued with 0", got.Status, got.Attempts)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	eventually(t, "the requeued job", func() bool { return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded })
}

// Cut ends a stopping worker's running executions at once, whatever is
// left of Grace (an hour here), and their jobs go back to the queue
// without losing an attempt. Before Cut, the only way to end them was
// Grace's timer: this test waited the hour.
func TestCutEndsRunningJobsAtOnce(t *testing.T) {
	s, _ := newStore(t, nil)
	started := make(chan struct{}, 1)
	cut := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.RunWorker(ctx, WorkerOptions{PollWait: 100 * time.Millisecond, Grace: time.Hour, Cut: cut,
			Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
				started <- struct{}{}
				<-ctx.Done()
				return Result{}, ctx.Err()
			})})
	}()
	j, _, err := s.Submit(context.Background(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel() // the first signal: no more jobs taken, the running one goes on
	close(cut)
	if err := <-done; err != nil {
		t.Fatalf("RunWorker: %v", err)
	}
	got := mustJob(t, s, "acme", j.ID)
	if got.Status != StatusQueued || got.Attempts != 0 {
		t.Fatalf("after the cut: %s with %d attempts, want queued with 0", got.Status, got.Attempts)
	}
}
