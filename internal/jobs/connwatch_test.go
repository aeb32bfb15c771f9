package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// dropPatience bounds the test's wait for an answer after NATS went away.
// The calls' own bound (RequestTimeout) is 10 minutes: an answer within
// this can only be the drop ending them, however loaded the machine.
const dropPatience = time.Minute

// TestInFlightCallsEndWhenNATSDrops: calls waiting on JetStream's reply
// when the NATS connection drops — a GET of a job (a key-value read) and
// a submit (its body's write, then the publish's ack) — end at once with
// ErrUnavailable (the 503 with Retry-After of batchapi), not after
// RequestTimeout (10 minutes here): nats.go keeps a request waiting
// across a disconnect until its deadline. A relay holds the server's
// replies, so both calls are provably waiting when the server shuts
// down. Then the server comes back on the same port and store: the
// Store reconnects by itself, the job accepted before the drop is still
// there and queued, and a new submit is accepted. Old code: both calls
// waited out the 10 minutes (the test fails at dropPatience).
func TestInFlightCallsEndWhenNATSDrops(t *testing.T) {
	n := newRestartableNATS(t)
	r := startRelay(t, n.first.ClientURL(), "$KV.sluice_")
	o := testOptions(r.url())
	o.RequestTimeout = 10 * time.Minute
	o.NoTracker = true // no background reads through the relay: only the test's calls count
	s := openStore(t, o)
	spec := Spec{Tenant: "t", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)}
	accepted, _, err := s.Submit(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}

	sent := r.count()
	r.hold()
	type answer struct {
		what string
		err  error
	}
	answers := make(chan answer, 2)
	go func() {
		_, err := s.Job(context.Background(), "t", accepted.ID)
		answers <- answer{"GET job", err}
	}()
	go func() {
		_, _, err := s.Submit(context.Background(), spec)
		answers <- answer{"submit", err}
	}()
	r.waitCount(t, sent+1) // both requests are out; their replies are held
	n.first.Shutdown()

	patience := time.After(dropPatience)
	for range 2 {
		select {
		case a := <-answers:
			if !errors.Is(a.err, ErrUnavailable) || !IsUnavailable(a.err) {
				t.Errorf("%s in flight when NATS dropped: %v, want ErrUnavailable", a.what, a.err)
			}
		case <-patience:
			t.Fatalf("a call in flight when NATS dropped still waits after %s (its RequestTimeout: %s)", dropPatience, o.RequestTimeout)
		}
	}

	r.release()
	if err := n.restart(); err != nil {
		t.Fatal(err)
	}
	var back *Job
	eventually(t, "the Store to read the accepted job again", func() bool {
		back, err = s.Job(t.Context(), "t", accepted.ID)
		return err == nil
	})
	if back.Status != StatusQueued {
		t.Fatalf("the job accepted before the drop is %s after it, want queued", back.Status)
	}
	if _, _, err := s.Submit(t.Context(), spec); err != nil {
		t.Fatalf("submit after the reconnect: %v", err)
	}
}

// TestAvailableWaitsForTheReconnectToBeTakenIn: nats.go reports the
// connection CONNECTED before its reconnect handler has run (callbacks
// run on one goroutine of their own, late on a loaded machine), and until
// that handler starts the connection's new epoch every call is refused
// with ErrUnavailable (onConn). Available must say so too: a caller that
// waits for Available before a call (the batch API's early check,
// TestWorkerStartsWhenNATSIsBack) would otherwise get the 503 it waited
// out. The test holds nats.go's callback goroutine in the disconnect
// handler, so the reconnect handler waits for it to be released. Old
// code: Available said nil while Submit was refused ("the NATS
// connection dropped while the call waited"), 1 run in 25 of
// TestWorkerStartsWhenNATSIsBack under load.
func TestAvailableWaitsForTheReconnectToBeTakenIn(t *testing.T) {
	n := newRestartableNATS(t)
	s := openStore(t, testOptions(n.first.ClientURL()))
	spec := Spec{Tenant: "t", Path: "/v1/chat/completions", Model: "m", Body: []byte(`{"model":"m"}`)}

	lostHandled := s.nc.DisconnectErrHandler()
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseCallbacks := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseCallbacks) // before the Store's Close, whose handler queues behind it
	s.nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
		lostHandled(c, err)
		<-release
	})

	lost := s.nc.StatusChanged(nats.RECONNECTING)
	n.first.Shutdown()
	select {
	case <-lost:
	case <-time.After(outagePatience):
		t.Fatalf("the client did not notice the outage within %s", outagePatience)
	}
	back := s.nc.StatusChanged(nats.CONNECTED)
	if err := n.restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back:
	case <-time.After(outagePatience):
		t.Fatalf("the client did not reconnect within %s", outagePatience)
	}
	// Connected, the reconnect handler held behind the disconnect's.
	_, _, submitErr := s.Submit(t.Context(), spec)
	if !errors.Is(submitErr, ErrUnavailable) {
		t.Fatalf("submit before the reconnect is taken in: %v, want ErrUnavailable", submitErr)
	}
	if err := s.Available(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Available before the reconnect is taken in: %v, want ErrUnavailable as the submit got (%v)", err, submitErr)
	}

	releaseCallbacks()
	eventually(t, "the Store to take the reconnect in", func() bool { return s.Available() == nil })
	if _, _, err := s.Submit(t.Context(), spec); err != nil {
		t.Fatalf("submit once Available says nil: %v", err)
	}
}
