package jobs

import (
	"context"
	"strconv"
	"strings"
	"sync"
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

// A job that runs for several AckWaits keeps its message: while it runs,
// its worker sends msg.InProgress for that delivery every AckWait/4, and
// each one restarts the server's AckWait timer (JetStream's contract, the
// way NATS advises to hold a message through long work), so a second
// worker on the same consumer never gets it.
//
// The heartbeat's clock is the test's: it ticks the running job's
// heartbeat eight times (two AckWaits' worth) and waits, after each tick,
// for the InProgress to reach the server, seen on the ack subject. No real
// AckWait (a minute) passes, so a stall of this process, which hosts the
// server too, cannot expire the message; what fails the test is a
// heartbeat not sent, sent for another delivery or not every AckWait/4, or
// the message let go while the job runs (delivered again, or run twice).
//
// The test used to submit beside running workers and let two real
// AckWaits (10 s) pass. Under CPU load it failed with "1 redelivered,
// executed 1 times": a worker took the message before Submit had written
// its record and naked it for later (by design, see Submit), and the
// redelivery that ran the job was counted against the heartbeats.
func TestHeartbeatsKeepALongJobsMessage(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	// Long enough that no stall of this process expires the message
	// between two ticks; short enough that a delivery lost before the job
	// started comes back within the test's patience.
	o.AckWait = time.Minute
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
	var mu sync.Mutex
	var beats []testBeat // one per message handled
	ticker := func(every time.Duration) (<-chan time.Time, func()) {
		tb := testBeat{every: every, tick: make(chan time.Time)}
		mu.Lock()
		beats = append(beats, tb)
		mu.Unlock()
		return tb.tick, func() {}
	}
	// The job is queued before the workers start, so that as a rule its
	// first delivery runs it: Submit publishes before it writes the record,
	// and a worker that gets the message in between naks it for later.
	j, _, err := a.Submit(t.Context(), spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, a, WorkerOptions{Executor: long, ticker: ticker})
	startWorker(t, b, WorkerOptions{Executor: long, ticker: ticker})
	waitStarted(t, started, a, j.ID)
	acks := watchAcks(t, srv, "jobs-"+j.Class) // before the first tick
	mu.Lock()
	// The job's heartbeat was made just before it started; any earlier
	// were for deliveries given back before it (a worker that could not
	// read the record yet, say).
	beat := beats[len(beats)-1]
	mu.Unlock()
	if beat.every != o.AckWait/4 {
		t.Fatalf("heartbeat every %s, want AckWait/4 = %s", beat.every, o.AckWait/4)
	}
	delivery := "" // the ack subject of the delivery the job runs under
	for i := range 8 {
		select {
		case beat.tick <- time.Now():
		case <-time.After(20 * time.Second): // a bound on a hang, not a synchronisation
			t.Fatalf("heartbeat %d: the heartbeat stopped while the job runs", i+1)
		}
		reply := acks.nextProgress(t)
		if delivery == "" {
			delivery = reply
		}
		if reply != delivery {
			t.Fatalf("heartbeat %d went to %s, the first to %s: want one delivery's", i+1, reply, delivery)
		}
	}
	cons, err := a.js.Consumer(t.Context(), workStream, "jobs-"+j.Class)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The verdict: no delivery since the job's, which is still unacked,
	// and one execution. (A delivery before the job's can be given back
	// for reasons of its own: a record not written yet, a late message
	// its worker gave back. That is not the heartbeats' business.)
	jobs := acks.consumerSeq(t, delivery)
	if info.Delivered.Consumer != jobs || info.NumAckPending != 1 || calls.Load() != 1 {
		t.Fatalf("after 8 heartbeats: last delivery %d (the job's %d, %d redelivered), %d pending ack, executed %d times; want the job's, 1 and 1",
			info.Delivered.Consumer, jobs, info.NumRedelivered, info.NumAckPending, calls.Load())
	}
	close(release)
	eventually(t, "the job to succeed", func() bool { return mustJob(t, a, "acme", j.ID).Status == StatusSucceeded })
	if got := mustJob(t, a, "acme", j.ID); got.Attempts != 1 || calls.Load() != 1 {
		t.Fatalf("attempts %d, executions %d; want 1 and 1", got.Attempts, calls.Load())
	}
}

// testBeat is a heartbeat ticker made for one message, ticked by the test.
type testBeat struct {
	every time.Duration
	tick  chan time.Time
}

// ackWatch sees what workers send the server about the messages of one
// consumer: acks, naks, heartbeats.
type ackWatch struct {
	sub   *nats.Subscription
	token string // ".<stream>.<consumer>." in the subjects
}

// watchAcks subscribes, on a connection of its own, to the acks of the
// messages of consumer.
func watchAcks(t *testing.T, srv *Embedded, consumer string) *ackWatch {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// $JS.ACK.<stream>.<consumer>.…, or with a domain and an account hash
	// before the stream: the whole tree, filtered by token.
	sub, err := nc.SubscribeSync("$JS.ACK.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	return &ackWatch{sub: sub, token: "." + workStream + "." + consumer + "."}
}

// nextProgress waits for the next heartbeat (+WPI) and returns the
// delivery it is for (its ack subject); anything else sent about the
// consumer's messages fails the test.
func (w *ackWatch) nextProgress(t *testing.T) string {
	t.Helper()
	for {
		m, err := w.sub.NextMsg(20 * time.Second) // a bound on a hang, not a synchronisation
		if err != nil {
			t.Fatalf("waiting for a heartbeat: %v", err)
		}
		if !strings.Contains(m.Subject, w.token) {
			continue
		}
		if string(m.Data) != "+WPI" {
			t.Fatalf("%q sent for %s while the job runs, want only heartbeats (+WPI)", m.Data, m.Subject)
		}
		return m.Subject
	}
}

// consumerSeq is the consumer sequence of the delivery whose ack subject
// is subj: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.…
func (w *ackWatch) consumerSeq(t *testing.T, subj string) uint64 {
	t.Helper()
	_, rest, _ := strings.Cut(subj, w.token)
	fields := strings.Split(rest, ".")
	if len(fields) < 3 {
		t.Fatalf("ack subject %q: no consumer sequence", subj)
	}
	n, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		t.Fatalf("ack subject %q: %v", subj, err)
	}
	return n
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
