package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The retry after an outage is a request's call (the bypass is lazy), so a
// replica with no traffic keeps sluice_ratelimit_store_degraded 1 after
// Redis returns, while its error counter stands still; under traffic
// while Redis is down every failed retry counts. The shipped alert
// (deploy/prometheus/sluice-alerts.yml) wants both, so an idle replica
// does not hold it after the outage. This pins the two facts it relies
// on, against a real redis-server.
func TestIdleReplicaKeepsDegradedWithoutNewErrors(t *testing.T) {
	r := newFailoverRig(t, FailOpen)
	ctx := context.Background()
	l := mustParse(t, "rate=30r/s burst=29 nodelay")
	now := time.Now()
	if _, err := r.fs.Take(ctx, "k", l, 1, now); err != nil {
		t.Fatal(err)
	}
	r.srv.Stop()
	r.fs.Take(ctx, "k", l, 1, now)
	// Traffic while down: one failed retry per back-off is counted.
	for i := 1; i <= 3; i++ {
		now = now.Add(30 * time.Second) // past any back-off
		r.fs.Take(ctx, "k", l, 1, now)
	}
	if got := r.errorsTotal(t); got != 4 {
		t.Fatalf("errors after the failing call and 3 failed retries: %v, want 4", got)
	}
	r.srv.Restart()
	// No request: nothing asks Redis, the gauge stays, the counter too.
	if !r.fs.Degraded() || testutil.ToFloat64(r.fs.degraded) != 1 || r.errorsTotal(t) != 4 {
		t.Fatalf("idle after Redis returned: degraded %v, errors %v; want 1 and 4", testutil.ToFloat64(r.fs.degraded), r.errorsTotal(t))
	}
	// The next request is the retry, and clears it.
	r.waitRecovered(t, l, now)
	if testutil.ToFloat64(r.fs.degraded) != 0 {
		t.Fatal("degraded gauge not cleared by the first request after the outage")
	}
}
