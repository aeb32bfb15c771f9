package app

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestRunSaysAStopPastTheQueueBoundWasNotClean: a job worker slot that
// never returns (one blocked in a call on a NATS that answers nothing, a
// wedged embedded server: kvwedge) keeps the queue's stop past
// queueStopBound; the stop is given up and the process exits as after a
// crash. Run returned nil then, as after a clean stop, so `sluice serve`
// exited 0 and a supervisor could not tell; now it returns
// ErrStopNotClean (exit 1). A clean stop of the same gateway still
// returns nil (serveApp's tests).
func TestRunSaysAStopPastTheQueueBoundWasNotClean(t *testing.T) {
	be := newJobBackend(t)
	a := newApp(t, jobDrainConfig(t, be.URL, "100ms", t.TempDir(), false))
	_, _, cancel, done := runApp(t, a)
	a.jobsMu.Lock()
	q := a.jobs
	a.jobsMu.Unlock()
	if q == nil {
		t.Fatal("no job queue")
	}
	q.workerWG.Add(1) // a slot blocked for good
	release := sync.OnceFunc(q.workerWG.Done)
	t.Cleanup(release)
	cancel() // SIGTERM
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopNotClean) {
			t.Fatalf("Run after a stop given up past the queue's bound: %v; want ErrStopNotClean", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still stopping after 1 min") // a hang guard, not a bound under test
	}
	// The given-up stop goes on in the background: let it end, so that
	// the embedded server and its data directory's lock go with the test.
	release()
	select {
	case <-q.closeDone:
	case <-time.After(time.Minute):
		t.Fatal("the queue's stop did not end once the slot returned")
	}
}
