package jobs

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// manualTimers is a WorkerOptions timer whose waits the test ends.
type manualTimers struct {
	mu    sync.Mutex
	waits []time.Duration
	fires chan chan time.Time
}

func newManualTimers() *manualTimers { return &manualTimers{fires: make(chan chan time.Time, 16)} }

func (m *manualTimers) timer(d time.Duration) (<-chan time.Time, func()) {
	m.mu.Lock()
	m.waits = append(m.waits, d)
	m.mu.Unlock()
	c := make(chan time.Time, 1)
	m.fires <- c
	return c, func() {}
}

// TestOneClassConsumerDownLeavesTheOthersRunning: the batch class's
// consumer cannot be created (another consumer already filters its
// subject, which a work-queue stream refuses). Before, RunWorker returned
// that error and no class ran: the interactive job waited too. Now the
// interactive and bulk classes run, the batch class is reported (one ERROR line,
// sluice_jobs_worker_classes_down 1, Backlog.ClassesDown) and retried
// after 1 s, 2 s, 4 s of the injected timer; once the other consumer is
// gone the next retry makes it, its job runs once and the report clears.
func TestOneClassConsumerDownLeavesTheOthersRunning(t *testing.T) {
	reg := prometheus.NewRegistry()
	logs := &lineLog{}
	s, _ := newStore(t, func(o *Options) { o.Registerer, o.Logger = reg, slog.New(logs) })
	ctx := context.Background()
	if _, err := s.js.CreateOrUpdateConsumer(ctx, workStream, jetstream.ConsumerConfig{
		Durable: "blocker", FilterSubject: workSubjects + "batch", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	timers := newManualTimers()
	var calls atomic.Int64
	// The class down between two others: a scan of the queue passes it.
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls), classTimer: timers.timer,
		Classes: []string{"interactive", "batch", "bulk"}})
	submit := func(class string) string {
		t.Helper()
		j, _, err := s.Submit(ctx, Spec{Tenant: "acme", Class: class, Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	succeeded := func(id string) func() bool {
		return func() bool { return mustJob(t, s, "acme", id).Status == StatusSucceeded }
	}
	batchJob, interactive, bulk := submit("batch"), submit("interactive"), submit("bulk")
	eventually(t, "the interactive job run while the batch class is down", succeeded(interactive))
	eventually(t, "the bulk job run while the batch class is down", succeeded(bulk))

	// Two failed retries, the blocker still there.
	for range 2 {
		(<-timers.fires) <- time.Now()
	}
	last := <-timers.fires
	if j := mustJob(t, s, "acme", batchJob); j.Status != StatusQueued {
		t.Fatalf("batch job while its class is down: %s; want queued", j.Status)
	}
	if down := s.ClassesDown(); !strings.Contains(down, "batch: consumer cannot be created") {
		t.Errorf("ClassesDown = %q; want the batch class", down)
	}
	if bl, err := s.Backlog(ctx); err != nil || bl.ClassesDown == "" {
		t.Errorf("Backlog = %+v, %v; want classes down", bl, err)
	}
	if got := promtest.Value(t, reg, "sluice_jobs_worker_classes_down", ""); got != 1 {
		t.Errorf("sluice_jobs_worker_classes_down = %v; want 1", got)
	}
	if n := logs.count("cannot create the consumer of a class"); n != 1 {
		t.Errorf("%d ERROR lines about the class; want 1: %q", n, logs.lines)
	}

	if err := s.js.DeleteConsumer(ctx, workStream, "blocker"); err != nil {
		t.Fatal(err)
	}
	last <- time.Now()
	eventually(t, "the batch job run once its consumer is made", succeeded(batchJob))
	eventually(t, "the class no longer reported", func() bool { return s.ClassesDown() == "" })
	if got := promtest.Value(t, reg, "sluice_jobs_worker_classes_down", ""); got != 0 {
		t.Errorf("sluice_jobs_worker_classes_down = %v after; want 0", got)
	}
	if calls.Load() != 3 {
		t.Errorf("%d executions; want 3", calls.Load())
	}
	timers.mu.Lock()
	defer timers.mu.Unlock()
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(timers.waits, want) {
		t.Errorf("retry waits %v; want %v", timers.waits, want)
	}
}
