package jobs

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCloseEndsWhenNATSDropsDuringIt: the Store's close deletes its
// webhook heartbeat (webhooks.release); NATS goes away while that delete
// waits for its reply (a relay holds the server's answers, so it
// provably waits), as when an external NATS stops just before or with
// the gateway. The close ends at the drop, nil. Before, the delete was
// bound by RequestTimeout alone (2 minutes here; 5 s by default, as
// long as the gateway's queueStopBound and the worker's
// workerCloseBound): the close outlived those bounds, and `sluice serve`
// or `sluice worker` exited 1 (stop not clean) for a stop that lost
// nothing. The test fails at dropPatience on that code.
func TestCloseEndsWhenNATSDropsDuringIt(t *testing.T) {
	n := newRestartableNATS(t)
	r := startRelay(t, n.first.ClientURL(), "KV-Operation: DEL")
	o := testOptions(r.url())
	o.RequestTimeout = 2 * dropPatience // the old code fails, then its cleanup's close ends
	o.NoTracker = true
	o.WebhookSecret = []byte(strings.Repeat("w", 32))
	o.WebhookSweepInterval = time.Hour // no heartbeat but the start's and the close's
	s := openStore(t, o)

	sent := r.count()
	r.hold()
	closed := make(chan error, 1)
	go func() { closed <- s.CloseWithin(context.Background()) }()
	r.waitCount(t, sent) // the heartbeat's delete is out; its reply held
	n.first.Shutdown()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close after NATS dropped: %v", err)
		}
	case <-time.After(dropPatience):
		t.Fatalf("the close still waits %s after NATS dropped (its RequestTimeout: %s)", dropPatience, o.RequestTimeout)
	}
}
