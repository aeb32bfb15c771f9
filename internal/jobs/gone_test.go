package jobs

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// A worker whose class's consumer is deleted under it (as a NATS server
// restarted on a store without it leaves it) makes the consumer again and
// runs the class's jobs; before, its pulls were answered 503 for good and
// the job submitted after the deletion stayed queued.
func TestWorkerMakesAGoneConsumerAgain(t *testing.T) {
	srv := startServer(t, t.TempDir())
	s := openStore(t, testOptions(srv.ClientURL()))
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	ctx := context.Background()
	first, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first job", func() bool { return mustJob(t, s, "acme", first.ID).Status == StatusSucceeded })
	for _, class := range []string{"interactive", "batch"} {
		if err := s.js.DeleteConsumer(ctx, workStream, consumerName(class)); err != nil {
			t.Fatal(err)
		}
	}
	second, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job submitted after the consumer was deleted", func() bool {
		return mustJob(t, s, "acme", second.ID).Status == StatusSucceeded
	})
	b, err := s.CreateBatch(ctx, batchSpec("acme", 3))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d executions, want 5", n)
	}
	eventually(t, "no class down", func() bool { return s.ClassesDown() == "" })
}

// A class taken down by a 503 while NATS (or JetStream) is away is tried
// again at the first wait each time, not after a backoff that grew while
// it was away: a disk fault shuts JetStream down (every pull answered
// 503 No Responders, every consumer creation failing) until the store's
// recovery, and the backoff had grown to a minute by then, so the class's
// jobs waited up to a minute past the recovery. Here the class's consumer
// is deleted (the 503), the server stopped for two failed retries and
// started again on its store and port; the retry's waits are the injected
// timer's.
func TestGoneConsumerRetryDoesNotBackOffWhileNATSIsAway(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	url := srv.ClientURL()
	port := srv.server().Addr().(*net.TCPAddr).Port
	s := openStore(t, testOptions(url))
	timers := newManualTimers()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls), classTimer: timers.timer})
	ctx := context.Background()
	eventually(t, "the worker's consumer", func() bool {
		_, err := s.js.Consumer(ctx, workStream, consumerName("interactive"))
		return err == nil
	})
	if err := s.js.DeleteConsumer(ctx, workStream, consumerName("interactive")); err != nil {
		t.Fatal(err)
	}
	first := <-timers.fires // the class is down: its retry waits
	srv.Shutdown()
	first <- time.Now()
	(<-timers.fires) <- time.Now() // NATS away: the retry fails again
	next := <-timers.fires
	again, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Shutdown)
	eventually(t, "the store reconnected", func() bool { return s.nc.IsConnected() })
	j, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	next <- time.Now()
	// The job runs once the consumer is made; a retry still failing (the
	// reconnection not yet taken in) waits for the next fire.
	deadline := time.Now().Add(time.Minute)
	for mustJob(t, s, "acme", j.ID).Status != StatusSucceeded {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the job")
		}
		select {
		case c := <-timers.fires:
			c <- time.Now()
		case <-time.After(10 * time.Millisecond):
		}
	}
	timers.mu.Lock()
	waits := slices.Clone(timers.waits)
	timers.mu.Unlock()
	for i, w := range waits {
		if w != classRetryFirst {
			t.Fatalf("retry wait %d of %v is %v; want %v each while NATS was away", i, waits, w, classRetryFirst)
		}
	}
	eventually(t, "no class down", func() bool { return s.ClassesDown() == "" })
}

// A class whose consumer can be made but whose pulls keep getting 503
// (here: the test deletes the consumer each time the worker makes it,
// as a consumer without a leader in a cluster answers no pull) stays one
// episode: one ERROR line when it goes down, none while it flaps, one
// INFO line once a pull on it is answered; the class reported down the
// while, each 503 counted. Before, each round logged an ERROR and an
// INFO line (about one of each a second) and the class came and went
// from /status.
func TestFlappingConsumerIsOneEpisode(t *testing.T) {
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	logs := &logLines{}
	o.Logger = slog.New(logs)
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	s := openStore(t, o)
	timers := newManualTimers()
	var calls atomic.Int64
	const rounds = 4
	var flaps atomic.Int64 // consumers still to take away as they are made
	ctx := context.Background()
	remove := func() {
		if err := s.js.DeleteConsumer(ctx, workStream, consumerName("interactive")); err != nil {
			t.Errorf("deleting the consumer: %v", err)
		}
	}
	startWorker(t, s, WorkerOptions{Concurrency: 2, Classes: []string{"interactive"}, Executor: okExec(&calls), classTimer: timers.timer,
		consumerMade: func(string) {
			if flaps.Add(-1) >= 0 {
				remove()
			}
		}})
	eventually(t, "the worker's consumer", func() bool {
		_, err := s.js.Consumer(ctx, workStream, consumerName("interactive"))
		return err == nil
	})
	flaps.Store(rounds - 1)
	remove()
	for round := range rounds {
		fire := <-timers.fires // a pull answered 503: the class is down, its retry waits
		if s.ClassesDown() == "" {
			t.Fatalf("round %d: no class reported down while its pulls get 503", round)
		}
		fire <- time.Now()
	}
	// The last one made stays: a pull on it is answered, the class is up.
	eventually(t, "no class down", func() bool { return s.ClassesDown() == "" })
	j, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the job", func() bool { return mustJob(t, s, "acme", j.ID).Status == StatusSucceeded })
	errs := logs.count(slog.LevelError, "job worker cannot create the consumer")
	infos := logs.count(slog.LevelInfo, "job worker created the consumer")
	if errs != 1 || infos != 1 {
		t.Fatalf("%d ERROR and %d INFO lines about the class over %d consumers made and lost; want one of each: %q %q",
			errs, infos, rounds, logs.at(slog.LevelError), logs.at(slog.LevelInfo))
	}
	if v := promtest.Value(t, reg, "sluice_jobs_worker_consumer_lost_total", ""); v != rounds {
		t.Fatalf("sluice_jobs_worker_consumer_lost_total = %v; want %d", v, rounds)
	}
}
