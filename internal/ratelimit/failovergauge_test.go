package ratelimit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-gw/sluice/internal/rate"
)

// keyedStore fails every operation on a key starting with "down" and
// answers the rest from a local store: two requests at once, one seeing
// the store up and one seeing it down.
type keyedStore struct{ *LocalStore }

func (s keyedStore) Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error) {
	if strings.HasPrefix(ops[0].Key, "down") {
		return nil, errors.New("connection refused")
	}
	return s.LocalStore.Apply(ctx, ops, now)
}

// TestDegradedGaugeFollowsTheState: a probe that finds the store back and
// a request that finds it down again, at once, leave the gauge saying
// what the store's state says. recovered() used to write 0 after
// releasing the lock: a failure landing in between set 1 under the lock,
// then the late 0 overwrote it, and the gauge read "healthy" for as long
// as the store stayed down. The gauge is now written by the store's
// redisconn.Bypass under its lock (TestBypassGaugeUnderLock checks that).
func TestDegradedGaugeFollowsTheState(t *testing.T) {
	f, err := NewFailoverStore(keyedStore{NewLocalStore(0)}, NewLocalStore(0), FailoverOptions{
		Mode: FailOpen, Threshold: 1, Backoff: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := rate.PerSecond(100, 99).NoDelay()
	now := time.Unix(1_000_000, 0)
	g := struct{ Gauge prometheus.Gauge }{f.degraded}

	if _, err := f.Take(ctx, "down-1", l, 1, now); err != nil { // fail-open: an answer, no error
		t.Fatal(err)
	}
	if !f.Degraded() || testutil.ToFloat64(g.Gauge) != 1 {
		t.Fatalf("after a failure: degraded %v, gauge %v; want true, 1", f.Degraded(), testutil.ToFloat64(g.Gauge))
	}
	// Past the back-off: this call is the probe, and the store answers it.
	if _, err := f.Take(ctx, "up", l, 1, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := 0.0
	if f.Degraded() {
		want = 1
	}
	if got := testutil.ToFloat64(g.Gauge); got != want {
		t.Fatalf("gauge %v with the store degraded=%v; want %v", got, f.Degraded(), want)
	}
}

// TestFailoverOneLateReplyIsNotAnOutage: with the default threshold, one
// failed call takes the failure mode (fail-closed: refused) but does not
// bypass the store: the next request goes to it. Two in a row do. Before,
// the first failure refused every request of the next back-off.
func TestFailoverOneLateReplyIsNotAnOutage(t *testing.T) {
	f, err := NewFailoverStore(keyedStore{NewLocalStore(0)}, NewLocalStore(0), FailoverOptions{
		Mode: FailClosed, Backoff: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := rate.PerSecond(100, 99).NoDelay()
	now := time.Unix(1_000_000, 0)
	if _, err := f.Take(ctx, "down-1", l, 1, now); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("the failing call: %v, want its failure mode (refused)", err)
	}
	if d, err := f.Take(ctx, "up", l, 1, now); err != nil || !d.Allowed || f.Degraded() {
		t.Fatalf("after one failure: %+v %v (degraded %v), want the store's answer", d, err, f.Degraded())
	}
	for i := range DefaultThreshold {
		if _, err := f.Take(ctx, "down-1", l, 1, now); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := f.Take(ctx, "up", l, 1, now); !errors.Is(err, ErrStoreUnavailable) || !f.Degraded() {
		t.Fatalf("after %d failures in a row: %v (degraded %v), want bypassed", DefaultThreshold, err, f.Degraded())
	}
}
