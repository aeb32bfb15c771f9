package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A message the server hands out as it shuts down is lost with the
// connection: nobody works on it, nobody naks it, so it comes back only
// when AckWait runs out. With the default AckWait that is 15 s after the
// delivery, not a minute; this test fails with the old default.
func TestMessageLostAtServerShutdownComesBackWithinAckWait(t *testing.T) {
	n := newRestartableNATS(t)
	o := testOptions(n.first.ClientURL())
	o.AckWait = 0 // the default
	s := openStore(t, o)
	if s.o.AckWait != DefaultAckWait {
		t.Fatalf("AckWait %s, want the default %s", s.o.AckWait, DefaultAckWait)
	}
	ctx := t.Context()
	j, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	// A client that takes the message from the shared consumer and is
	// gone with the server: the delivery is recorded, the message lost.
	if _, err := s.consumer(ctx, j.Class); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.first.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, workStream, "jobs-"+j.Class)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := <-batch.Messages(); !ok {
		t.Fatalf("the message was not delivered: %v", batch.Error())
	}
	delivered := time.Now()
	n.first.Shutdown()
	if err := n.restart(); err != nil {
		t.Fatal(err)
	}

	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	// Patience: 40 s, the default AckWait and room for a loaded machine;
	// the old one-minute AckWait fails it.
	const patience = 40 * time.Second
	deadline := delivered.Add(patience)
	for mustJobWhenBack(t, s, j.ID).Status != StatusSucceeded {
		if time.Now().After(deadline) {
			t.Fatalf("the lost message did not come back within %s (AckWait %s)", patience, s.o.AckWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if calls.Load() != 1 {
		t.Fatalf("executed %d times, want 1", calls.Load())
	}
}

// mustJobWhenBack reads a job, counting "NATS is away" as not done yet.
func mustJobWhenBack(t *testing.T, s *Store, id string) *Job {
	t.Helper()
	j, err := s.Job(context.Background(), "acme", id)
	if IsUnavailable(err) {
		return &Job{}
	}
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A job that runs for several AckWaits keeps its message: the worker's
// heartbeats (msg.InProgress every AckWait/4) restart the server's timer,
// so a second worker on the same consumer never gets it.
//
// The verdict is the server's redelivery count and the executions, never a
// duration. What a loaded machine can do is delay a heartbeat: the message
// is redelivered only if no heartbeat lands for a whole AckWait, i.e. if one
// is late by more than AckWait - AckWait/4. At 3s that slack was 2.25s, a
// stall a starved, race-instrumented process can reach; at 10s it is 7.5s.
// Stopped heartbeats still fail the test: the message is then redelivered
// after one AckWait, well inside the two watched.
func TestHeartbeatsKeepALongJobsMessage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.AckWait = 10 * time.Second
	a, b := openStore(t, o), openStore(t, o)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var calls atomic.Int64
	long := execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		return Result{StatusCode: 200, Body: []byte(`{"ok":true}`)}, nil
	})
	startWorker(t, a, WorkerOptions{Executor: long})
	startWorker(t, b, WorkerOptions{Executor: long})
	j, _, err := a.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	waitStarted(t, started, a, j.ID)
	// The time under test: two AckWaits with the job running (a window, not
	// a synchronisation: a slow machine only makes it longer). Without
	// heartbeats the message would be redelivered, and run again by
	// either worker, after the first.
	time.Sleep(2 * o.AckWait)
	cons, err := a.js.Consumer(t.Context(), workStream, "jobs-"+j.Class)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || calls.Load() != 1 {
		t.Fatalf("after 2×AckWait: %d redelivered, executed %d times; want 0 and 1", info.NumRedelivered, calls.Load())
	}
	close(release)
	eventually(t, "the job to succeed", func() bool { return mustJob(t, a, "acme", j.ID).Status == StatusSucceeded })
	if got := mustJob(t, a, "acme", j.ID); got.Attempts != 1 || calls.Load() != 1 {
		t.Fatalf("attempts %d, executions %d; want 1 and 1", got.Attempts, calls.Load())
	}
}

// waitStarted waits for the executor to start job id, and fails at once
// instead of hanging if the job ends without starting it.
func waitStarted(t *testing.T, started <-chan struct{}, s *Store, id string) {
	t.Helper()
	for {
		select {
		case <-started:
			return
		case <-time.After(10 * time.Millisecond): // polling the job, not a deadline
			if j := mustJob(t, s, "acme", id); j.Status.Terminal() {
				t.Fatalf("job ended (%s) without its executor starting", j.Status)
			}
		}
	}
}
