package jobs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// startServer runs an embedded NATS on a random loopback port over dir.
func startServer(t *testing.T, dir string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// startBoundedServer runs an embedded NATS on a random loopback port over
// a temporary directory, its JetStream store bounded at maxStoreBytes.
func startBoundedServer(t *testing.T, maxStoreBytes int64) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{Dir: t.TempDir(), Port: -1, MaxStoreBytes: maxStoreBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// heldAckWait is the AckWait of the tests that watch a worker keep a
// message it holds (a refused result or requeue) for two AckWaits: only
// its heartbeats, every AckWait/4, keep the message from coming back, so
// a stall of the worker's process longer than 3/4 of it redelivers. At
// 2 s that was 1.5 s, which a loaded machine reached ("2 deliveries, 2
// executions"); at 6 s, 4.5 s.
const heldAckWait = 6 * time.Second

// testOptions are fast timings for tests.
func testOptions(url string) Options {
	return Options{
		URL:           url,
		AckWait:       5 * time.Second,
		RetryDelay:    10 * time.Millisecond,
		MaxRetryDelay: 50 * time.Millisecond,
		BusyDelay:     10 * time.Millisecond,
		TrackInterval: 50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

func openStore(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// newStore starts a server and opens a Store on it.
func newStore(t *testing.T, tweak func(*Options)) (*Store, *Embedded) {
	t.Helper()
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	if tweak != nil {
		tweak(&o)
	}
	return openStore(t, o), srv
}

// startWorker runs s.RunWorker until the returned stop (also a cleanup).
func startWorker(t *testing.T, s *Store, o WorkerOptions) (stop func()) {
	t.Helper()
	if o.PollWait == 0 {
		o.PollWait = 100 * time.Millisecond
	}
	if o.Grace == 0 {
		o.Grace = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunWorker(ctx, o) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunWorker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or a minute passes: the queue's
// work happens on other goroutines and in the server, so there is no
// single event to wait on. The minute is a hang guard, not a timing
// assertion (20 s was once outrun on a machine loaded by other suites).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// execFunc is an Executor made of a function.
type execFunc func(ctx context.Context, j *Job) (Result, error)

func (f execFunc) Execute(ctx context.Context, j *Job) (Result, error) { return f(ctx, j) }

// okExec answers every job 200 with a small body, counting calls.
func okExec(calls *atomic.Int64) Executor {
	return execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		return Result{StatusCode: 200, RequestID: "req-" + j.ID, Body: []byte(`{"ok":true}`)}, nil
	})
}

// gate is a Gate that admits while open.
type gate struct {
	mu      sync.Mutex
	open    chan struct{}
	waiting atomic.Int64
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Wait(ctx context.Context, model string) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { close(g.open) }

// clock is a settable Clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustJob(t *testing.T, s *Store, tenant, id string) *Job {
	t.Helper()
	j, err := s.Job(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
