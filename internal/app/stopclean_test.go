package app

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
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

// TestStopWithTheExternalNATSDownIsClean: an external NATS stopped before
// the gateway (restarted, or stopped first as a whole deployment goes
// down), nothing running, then SIGTERM once the gateway has seen NATS go:
// the stop is clean, Run returns nil (exit 0; startQueueAppStopping's
// cleanup checks it). A guard (it passes on the code before branch
// review11): a stop racing nats.go's noticing the drop waited out
// request_timeout on the webhook heartbeat's delete, past queueStopBound,
// and exited 1 (jobs' TestCloseEndsWhenNATSDropsDuringIt). The queue's
// stop gets 20 s here, not 5 (room for a loaded machine), and what the
// drain left of shutdown_grace + 2 s (queueCloseBound: about 32 s at the
// default grace, nothing running): about 52 s, still short of the 2 min
// request_timeout such a wait takes.
func TestStopWithTheExternalNATSDownIsClean(t *testing.T) {
	nats, err := jobs.StartEmbedded(jobs.EmbeddedOptions{Dir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	be, _ := countingBackend(t)
	// request_timeout past the stop's bound: a call left waiting on the
	// dead connection would be past the bound for sure.
	url := startQueueAppStopping(t, be.URL, "url: "+nats.ClientURL()+"\n  request_timeout: 2m", 20*time.Second)
	code, h, b := do(t, http.MethodPost, url+"/v1/embeddings", "application/json",
		strings.NewReader(`{"model":"m","input":"x"}`), "Prefer", "respond-async")
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	pollJSON(t, url+h.Get("Location"), func(m map[string]any) bool { return m["status"] == "succeeded" })
	nats.Shutdown() // before the gateway's stop (startQueueAppWith's cleanup)
	nats.WaitForShutdown()
	// The stop once the gateway has seen NATS go (it answers
	// queue_unavailable): a stop before that raced nats.go's noticing.
	for guard := time.Now().Add(time.Minute); ; {
		code, _, b := do(t, http.MethodPost, url+"/v1/embeddings", "application/json",
			strings.NewReader(`{"model":"m","input":"x"}`), "Prefer", "respond-async")
		if code == http.StatusServiceUnavailable && strings.Contains(string(b), "queue_unavailable") {
			break
		}
		if time.Now().After(guard) { // a hang guard, not a bound under test
			t.Fatalf("the gateway still takes jobs 1 min after NATS stopped: %d %s", code, b)
		}
	}
}
