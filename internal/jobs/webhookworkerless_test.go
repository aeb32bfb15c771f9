package jobs

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A process that runs no worker (a gateway with jobs.workers 0 that only
// accepts jobs while `sluice worker` processes run them) still sweeps:
// when the worker process that owns a pending webhook is killed, the
// survivor resends it once the dead one's lease has passed. Before, only
// a process that had started a worker swept, and such a webhook waited
// for the next worker to start, forever if none did.
func TestWebhookOfKilledWorkerResentByWorkerlessProcess(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := newClock()
	inFlight := make(chan struct{}, 1)
	target := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 { // the worker waits an hour to retry: pending, the worker's
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
			inFlight <- struct{}{}
		}
	})
	// The gateway: jobs accepted, no worker started.
	gw := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) { o.Now = c.Now }))
	// The worker process beats at its start and then not for an hour: as
	// if killed once its webhook is pending.
	var calls atomic.Int64
	wk := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) {
		o.Now, o.WebhookLease, o.WebhookSweepInterval, o.WebhookTimeout = c.Now, 3*time.Hour, time.Hour, 2*time.Hour
	}))
	startWorker(t, wk, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, gw, target.URL+"/hook")
	<-inFlight
	waitSweeps(t, gw, 2)
	if n := target.count(j.ID); n != 1 {
		t.Fatalf("%d deliveries while the worker's heartbeat is current, want 1 (its own)", n)
	}
	c.Advance(3*time.Hour + time.Second)
	waitWebhook(t, gw, j.ID, "delivered")
	waitSweeps(t, gw, 2)
	if n := target.count(j.ID); n != 2 {
		t.Fatalf("%d deliveries, want 2 (the worker's 503, the gateway's resend)", n)
	}
	if n := gw.hooks.resends[resendDelivered].Load(); n != 1 {
		t.Fatalf("resends delivered by the workerless process %d, want 1", n)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the job ran %d times; only its webhook is resent", n)
	}
}
