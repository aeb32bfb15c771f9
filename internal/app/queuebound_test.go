package app

import (
	"io"
	"log/slog"
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
