package app

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// The job queue's stop at the end of a shutdown had a fixed 5 s
// (queueStopBound), whatever the drain had left of shutdown_grace: a
// gateway with nothing in flight, on a NATS slow to let go but answering,
// gave the stop up at 5 s and exited 1 while its supervisor, told to wait
// StopBound (grace + 2 s + 5 s), would have waited on. The stop now gets
// 5 s and what the drain and the cut left of theirs (as `sluice worker`'s
// close does): on a clock that stands still, a drain that ended at once
// leaves all of grace + 2 s; a second signal (Cut) only shortens it, to
// the cut's 2 s.
func TestQueueStopGetsWhatTheDrainLeft(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  bool
		want time.Duration
	}{
		{"drain ended at once", false, time.Hour + cutBound + queueStopBound},
		{"second signal", true, cutBound + queueStopBound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newJobBackend(t)
			cfg, err := config.Load(jobDrainConfig(t, be.URL, "1h", t.TempDir(), false))
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
			a, err := newWithClock(cfg, Source{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return at })
			if err != nil {
				t.Fatal(err)
			}
			_, _, cancel, done := runApp(t, a)
			a.jobsMu.Lock()
			q := a.jobs
			a.jobsMu.Unlock()
			if q == nil {
				t.Fatal("no job queue")
			}
			if tc.cut {
				a.Cut() // before the shutdown: it skips the drain
			}
			cancel() // SIGTERM
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run still stopping after 1 min") // a hang guard, not a bound under test
			}
			if got := time.Duration(a.queueBound.Load()); got != tc.want {
				t.Fatalf("the queue's stop had %s, want %s", got, tc.want)
			}
		})
	}
}

// A second signal that comes while the queue's stop runs shortens it too.
// The bound was taken when the stop began, so a gateway with nothing in
// flight on a NATS that answers nothing (kvwedge; here a worker slot
// that never returns, which the stop waits for) was given shutdown_grace
// + 7 s and a second SIGTERM changed nothing: 1 h here (the old code
// runs into the 1-min hang guard), where the fixed 5 s before selfprot
// bounded it. Now the stop ends within the cut's 2 s + 5 s of the Cut,
// given up (ErrStopNotClean), the bound it names being that.
func TestSecondSignalShortensARunningQueueStop(t *testing.T) {
	be := newJobBackend(t)
	a := newApp(t, jobDrainConfig(t, be.URL, "1h", t.TempDir(), false))
	url, _, cancel, done := runApp(t, a)
	// An answer: Run serves, so it has started the queue's workers
	// (before its Serve), which the stop stops.
	do(t, http.MethodGet, url+"/v1/models", "", nil)
	a.jobsMu.Lock()
	q := a.jobs
	// A shutdown's drain that ended at once, its grace all left.
	a.stopDue = a.deps.Now().Add(time.Hour + cutBound)
	a.jobsMu.Unlock()
	if q == nil {
		t.Fatal("no job queue")
	}
	q.workerWG.Add(1) // a slot blocked for good: the queue's stop waits
	release := sync.OnceFunc(q.workerWG.Done)
	t.Cleanup(release)
	stopped := make(chan struct{})
	go func() { defer close(stopped); a.closeQueue() }()
	// The stop has begun once it has its bound; then the second signal.
	for guard := time.Now().Add(time.Minute); a.queueBound.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(guard) {
			t.Fatal("the queue's stop did not begin") // a hang guard
		}
	}
	if got := time.Duration(a.queueBound.Load()); got < time.Hour {
		t.Fatalf("the stop began with %s, want the grace left (1h and more)", got)
	}
	a.Cut()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("the queue's stop still running 1 min after a second signal") // a hang guard, not a bound under test
	}
	if !a.queueGivenUp.Load() {
		t.Fatal("the stop ended without being given up, though the slot never returned")
	}
	if got := time.Duration(a.queueBound.Load()); got > cutBound+queueStopBound+time.Minute {
		t.Fatalf("the stop names a bound of %s, want the one the cut left (about %s)", got, cutBound+queueStopBound)
	}
	release()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run still stopping after 1 min")
	}
}
