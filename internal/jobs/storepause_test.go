package jobs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// fullStore is a store filled to JetStream's hard bound: two 40 KiB
// files (to delete for room), then jobs of 1 KiB bodies until one is
// refused.
type fullStore struct {
	s      *Store
	reg    *prometheus.Registry
	logs   *logLines
	files  []*File
	queued []string // job ids
}

func newFullStore(t *testing.T, tweak func(*Options)) *fullStore {
	t.Helper()
	const limit = 256 << 10
	srv := startBoundedServer(t, limit)
	o := testOptions(srv.ClientURL())
	o.MaxFileBytes = 64 << 10
	f := &fullStore{reg: prometheus.NewRegistry(), logs: &logLines{}}
	o.Registerer = f.reg
	o.Logger = slog.New(f.logs)
	if tweak != nil {
		tweak(&o)
	}
	f.s = openStore(t, o)
	ctx := context.Background()

	content := bytes.Repeat([]byte("x"), 40<<10)
	for range 2 {
		file, err := f.s.PutFile(ctx, File{Filename: "in.jsonl", Purpose: "batch", Tenant: "acme"}, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		f.files = append(f.files, file)
	}
	// Jobs until JetStream refuses one: the store is then at its hard
	// bound, where every write is refused.
	body := []byte(`{"model":"m","pad":"` + strings.Repeat("p", 1<<10) + `"}`)
	for {
		j, _, err := f.s.Submit(ctx, Spec{Tenant: "acme", Path: "/v1/chat/completions", Model: "m", Body: body})
		if errors.Is(err, ErrStoreFull) {
			break
		}
		if err != nil {
			t.Fatalf("job %d: %v", len(f.queued), err)
		}
		if f.queued = append(f.queued, j.ID); len(f.queued) > 1000 {
			t.Fatalf("%d jobs stored under a %d-byte limit", len(f.queued), limit)
		}
	}
	if len(f.queued) < 40 {
		t.Fatalf("only %d jobs queued before the store was full; want a backlog", len(f.queued))
	}
	// A submit refused after its body was stored removes the body, which
	// may bring the store back under its bound: top it up past it.
	fillStore(t, f.s)
	return f
}

// workQueueInfo reads the interactive class's consumer.
func workQueueInfo(t *testing.T, s *Store) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := s.js.Consumer(t.Context(), workStream, "jobs-interactive")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestWorkerPausesOnFullStore fills a store to JetStream's hard bound with
// a backlog of jobs and runs a worker on it: after the first refused
// starts (at most one per slot) the worker pauses, each backoff it ends
// costs one refused start (the probe), the backoffs double with jitter up
// to 30s, no job loses an attempt, and once deletes free space the worker
// resumes without waiting out its backoff (the usage reading shows it)
// and runs every job. One warning line and one info line for the pause.
func TestWorkerPausesOnFullStore(t *testing.T) {
	f := newFullStore(t, nil)
	s, reg, logs, files, queued := f.s, f.reg, f.logs, f.files, f.queued
	ctx := context.Background()

	// The backoffs are the test's: each one asked is recorded, and ends
	// when the test says.
	asked := make(chan time.Duration, 64)
	fire := make(chan time.Time)
	var calls atomic.Int64
	const slots = 4
	startWorker(t, s, WorkerOptions{Concurrency: slots, Executor: okExec(&calls), PollWait: 20 * time.Millisecond,
		pauseTimer: func(d time.Duration) (<-chan time.Time, func()) {
			asked <- d
			return fire, func() {}
		}})
	refused := func() uint64 { return s.stats.startsRefused.Load() }
	// nextBackoff waits for the worker to ask for its next backoff, failing
	// as soon as more starts were refused than bound allows.
	nextBackoff := func(bound uint64) time.Duration {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			select {
			case d := <-asked:
				if got := refused(); got > bound {
					t.Fatalf("%d job starts refused; want at most %d", got, bound)
				}
				return d
			case <-time.After(5 * time.Millisecond):
			}
			if got := refused(); got > bound {
				t.Fatalf("%d job starts refused with %d jobs queued and no backoff asked for; want at most %d: the worker does not pause",
					got, len(queued), bound)
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for a backoff (%d starts refused)", refused())
			}
		}
	}

	// The first refusal pauses the worker; slots that took a message
	// before it may be refused too, one each.
	rounds := 13 // 10ms << 12 passes the 30s bound
	for round := range rounds {
		d := nextBackoff(uint64(slots + round))
		want := min(testOptions("").BusyDelay<<round, maxStorePause)
		if d <= want/2 || d > want {
			t.Errorf("backoff %d = %v; want in (%v, %v]", round, d, want/2, want)
		}
		if round == 0 {
			if got := promtest.Value(t, reg, "sluice_jobs_workers_paused", ""); got != 1 {
				t.Errorf("sluice_jobs_workers_paused = %v while paused, want 1", got)
			}
		}
		if round < rounds-1 {
			select {
			case fire <- time.Now(): // the backoff ends: one probe
			case <-time.After(20 * time.Second):
				t.Fatal("the backoff was not waited on")
			}
		}
	}
	// Nor are messages taken and given back: the slots keep theirs.
	info := workQueueInfo(t, s)
	t.Logf("%d jobs queued; %d starts refused over %d backoffs; %d deliveries", len(queued), refused(), rounds, info.Delivered.Consumer)
	if info.Delivered.Consumer > slots {
		t.Errorf("%d deliveries while paused; want at most %d, one a slot", info.Delivered.Consumer, slots)
	}
	if calls.Load() != 0 {
		t.Fatalf("%d jobs executed on a full store", calls.Load())
	}
	for _, id := range queued {
		if j := mustJob(t, s, "acme", id); j.Status != StatusQueued || j.Attempts != 0 {
			t.Fatalf("job %s while paused: %s with %d attempts; want queued, none counted", id, j.Status, j.Attempts)
		}
	}

	// Deletes free space: the worker sees it in the store's usage and
	// resumes without the last backoff ending; every job runs.
	for _, f := range files {
		if err := s.DeleteFile(ctx, "acme", f.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range queued {
		eventually(t, "job "+id+" to finish", func() bool { return mustJob(t, s, "acme", id).Status.Terminal() })
		if j := mustJob(t, s, "acme", id); j.Status != StatusSucceeded || j.Attempts != 1 {
			t.Fatalf("job %s: %s with %d attempts; want succeeded at its first", id, j.Status, j.Attempts)
		}
	}
	if st := s.Stats(); st.DeadLettered != 0 || st.Retried != 0 {
		t.Errorf("stats %+v; want nothing dead-lettered or retried", st)
	}
	eventually(t, "the pause to end", func() bool { return promtest.Value(t, reg, "sluice_jobs_workers_paused", "") == 0 })
	if got := promtest.Value(t, reg, "sluice_jobs_worker_store_pauses_total", ""); got != 1 {
		t.Errorf("sluice_jobs_worker_store_pauses_total = %v, want 1", got)
	}
	if got := promtest.Value(t, reg, "sluice_jobs_worker_starts_refused_total", ""); got != float64(refused()) || got > slots+float64(rounds) {
		t.Errorf("sluice_jobs_worker_starts_refused_total = %v, want %d, at most %d", got, refused(), slots+rounds)
	}
	if warn, info := logs.count(slog.LevelWarn, "job store full"), logs.count(slog.LevelInfo, "job store has room"); warn != 1 || info != 1 {
		t.Errorf("%d warning and %d info lines about the pause, want one each; all warnings: %q", warn, info, logs.at(slog.LevelWarn))
	}
}

// logLines is a slog.Handler keeping each record's level and message.
type logLines struct {
	mu    sync.Mutex
	lines []slog.Record
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (h *logLines) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logLines) WithGroup(string) slog.Handler            { return h }

func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r)
	return nil
}

// count is how many records at level start with prefix.
func (h *logLines) count(level slog.Level, prefix string) int {
	n := 0
	for _, m := range h.at(level) {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// at is the messages of the records at level.
func (h *logLines) at(level slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var msgs []string
	for _, r := range h.lines {
		if r.Level == level {
			msgs = append(msgs, r.Message)
		}
	}
	return msgs
}

// TestWorkerStopsWhilePaused: a worker stopped during a pause returns,
// leaves the gauge at 0 and gives back the messages its slots kept: once
// space frees, another worker runs every job without waiting out AckWait
// (a minute here) for them.
func TestWorkerStopsWhilePaused(t *testing.T) {
	f := newFullStore(t, func(o *Options) { o.AckWait = time.Minute })
	asked := make(chan time.Duration, 64)
	var calls atomic.Int64
	stop := startWorker(t, f.s, WorkerOptions{Concurrency: 4, Executor: okExec(&calls), PollWait: 20 * time.Millisecond,
		pauseTimer: func(d time.Duration) (<-chan time.Time, func()) {
			asked <- d
			return nil, func() {} // never ends by itself
		}})
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatalf("no pause after %d refused starts", f.s.stats.startsRefused.Load())
	}
	if info := workQueueInfo(t, f.s); info.NumAckPending == 0 {
		t.Fatal("no message held while paused")
	}
	stop()
	if got := promtest.Value(t, f.reg, "sluice_jobs_workers_paused", ""); got != 0 {
		t.Errorf("sluice_jobs_workers_paused = %v after the worker stopped, want 0", got)
	}

	for _, file := range f.files {
		if err := f.s.DeleteFile(t.Context(), "acme", file.ID); err != nil {
			t.Fatal(err)
		}
	}
	startWorker(t, f.s, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	for _, id := range f.queued {
		eventually(t, "job "+id+" to finish", func() bool { return mustJob(t, f.s, "acme", id).Status.Terminal() })
		if j := mustJob(t, f.s, "acme", id); j.Status != StatusSucceeded || j.Attempts != 1 {
			t.Fatalf("job %s: %s with %d attempts; want succeeded at its first", id, j.Status, j.Attempts)
		}
	}
}
