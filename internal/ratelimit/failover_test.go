package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/rate"
	"github.com/sluice-gw/sluice/internal/testutil/redistest"
)

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

type failoverRig struct {
	srv  *redistest.Server
	fs   *FailoverStore
	reg  *prometheus.Registry
	logs *logBuf
}

// newFailoverRig has a generous call timeout: a loaded CI machine must
// not fake an outage.
func newFailoverRig(t *testing.T, mode FailureMode) *failoverRig {
	t.Helper()
	srv := redistest.Start(t)
	r := &failoverRig{srv: srv, reg: prometheus.NewRegistry(), logs: &logBuf{}}
	fs, err := NewFailoverStore(NewRedisStore(newClient(t, srv.Addr), RedisOptions{}), NewLocalStore(0), FailoverOptions{
		Mode: mode, Replicas: 3, Threshold: 1, Backoff: 200 * time.Millisecond, Timeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)), Registerer: r.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.fs = fs
	return r
}

func (r *failoverRig) errorsTotal(t *testing.T) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(r.reg, "sluice_ratelimit_store_errors_total")
	if err != nil || n != 1 {
		t.Fatalf("errors metric not registered: %v", err)
	}
	return testutil.ToFloat64(r.fs.errs)
}

// waitRecovered retries (advancing the fake now past each back-off) until
// the shared store answers again; rueidis reconnects on its own.
func (r *failoverRig) waitRecovered(t *testing.T, l Limit, now time.Time) (Decision, time.Time) {
	t.Helper()
	for range 300 { // up to 30s: a loaded machine reconnects slowly
		now = now.Add(30 * time.Second) // past any back-off
		d, err := r.fs.Take(context.Background(), "k", l, 1, now)
		if err == nil && !r.fs.Degraded() {
			return d, now
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("redis store did not recover after restart")
	return Decision{}, now
}

func TestFailOpenLocalShareAndRecovery(t *testing.T) {
	r := newFailoverRig(t, FailOpen)
	ctx := context.Background()
	l := mustParse(t, "rate=30r/s burst=29 nodelay") // capacity 30; a replica's share is 10
	now := time.Now()

	if d, err := r.fs.Take(ctx, "k", l, 1, now); err != nil || !d.Allowed || d.Remaining != 29 {
		t.Fatalf("healthy: %+v, %v", d, err)
	}

	r.srv.Stop()
	served := 0
	for range 15 {
		d, err := r.fs.Take(ctx, "k", l, 1, now)
		if err != nil {
			t.Fatalf("fail-open returned an error: %v", err)
		}
		if d.Allowed {
			served++
		}
	}
	if served != 10 {
		t.Fatalf("fail-open served %d of 15, want this replica's share, 10", served)
	}
	// One failed call, then the back-off keeps requests off Redis: one
	// error counted, one log line, not fifteen.
	if got := r.errorsTotal(t); got != 1 {
		t.Fatalf("store errors = %v, want 1", got)
	}
	if n := r.logs.count("rate limit store unavailable"); n != 1 {
		t.Fatalf("%d transition log lines, want 1:\n%s", n, r.logs.b.String())
	}
	if !r.fs.Degraded() || testutil.ToFloat64(r.fs.degraded) != 1 {
		t.Fatal("not marked degraded")
	}

	r.srv.Restart()
	d, _ := r.waitRecovered(t, l, now)
	// The answer comes from Redis (capacity 30), not the local share (10).
	// (Not Remaining == 29: under load a timed-out probe may still have
	// run on the server.)
	if !d.Allowed || d.Limit != 30 || d.Remaining < 20 {
		t.Fatalf("after recovery: %+v, want a fresh Redis bucket", d)
	}
	if n := r.logs.count("rate limit store recovered"); n != 1 {
		t.Fatalf("%d recovery log lines, want 1", n)
	}
	if testutil.ToFloat64(r.fs.degraded) != 0 {
		t.Fatal("degraded gauge not cleared")
	}
}

func TestFailClosedRefusesAndRecovers(t *testing.T) {
	r := newFailoverRig(t, FailClosed)
	ctx := context.Background()
	l := rate.PerSecond(10, 9).NoDelay()
	lim, err := NewLimiter(r.fs, Rules{PerKey: Rule{Requests: l}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if res, err := lim.Check(ctx, Subject{Key: "sk-1"}, 0, now); err != nil || !res.Allowed {
		t.Fatalf("healthy: %+v, %v", res, err)
	}

	r.srv.Stop()
	res, err := lim.Check(ctx, Subject{Key: "sk-1"}, 0, now)
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("fail-closed error = %v, want ErrStoreUnavailable", err)
	}
	if res.Allowed || res.Scope != "store" || res.RetryAfter <= 0 {
		t.Fatalf("fail-closed result %+v, want a refusal with a retry time", res)
	}
	h := http.Header{}
	res.WriteHeaders(h)
	if h.Get("Retry-After") == "" || !strings.Contains(res.Reason(), "unavailable") {
		t.Fatalf("refusal headers %v, reason %q", h, res.Reason())
	}
	// Inside the back-off: refused without touching Redis.
	if _, err := r.fs.Take(ctx, "x", l, 1, now.Add(50*time.Millisecond)); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("within back-off: %v", err)
	}
	if got := r.errorsTotal(t); got != 1 {
		t.Fatalf("store errors = %v, want 1", got)
	}

	r.srv.Restart()
	if d, _ := r.waitRecovered(t, l, now); !d.Allowed {
		t.Fatalf("after recovery: %+v", d)
	}
}

// A hung Redis (the process stopped, connections open) costs a request at
// most the timeout before the fallback answers.
func TestFailoverTimeout(t *testing.T) {
	// The healthy first call gets the rig's generous timeout: a loaded
	// machine must not fake an outage. The timeout under test, set after
	// it (no call runs then), fires against a stopped process, whatever
	// the machine's load.
	r := newFailoverRig(t, FailOpen)
	ctx := context.Background()
	l := rate.PerSecond(10, 9).NoDelay()
	if _, err := r.fs.Take(ctx, "k", l, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	r.fs.opt.Timeout = 200 * time.Millisecond
	r.srv.Pause()
	defer r.srv.Resume()
	d, err := r.fs.Take(ctx, "k", l, 1, time.Now())
	if err != nil || !d.Allowed || d.Limit != 4 { // share of capacity 10 over 3 replicas, rounded up
		t.Fatalf("hung redis: %+v, %v; want the local share", d, err)
	}
	if got := r.errorsTotal(t); got != 1 {
		t.Fatalf("store errors = %v, want 1", got)
	}
}

// A caller that gives up is not a store failure.
func TestFailoverCallerCancelIsNotAnOutage(t *testing.T) {
	r := newFailoverRig(t, FailOpen)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.fs.Take(ctx, "k", rate.PerSecond(1, 0), 1, time.Now()); err == nil {
		t.Fatal("cancelled call succeeded")
	}
	if r.fs.Degraded() || r.errorsTotal(t) != 0 {
		t.Fatal("a cancelled caller marked the store down")
	}
}

// Open starts even when Redis is down (fail-open), limits at the local
// share, and uses Redis once it appears.
func TestOpenWithoutRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	lim, err := Open(config.RateLimits{
		Store:  "redis",
		Redis:  config.RateLimitRedis{Redis: config.Redis{Addrs: []string{addr}}, FailureMode: "open", Replicas: 2},
		PerKey: config.RateRule{Requests: ptr(mustParse(t, "rate=10r/s burst=9 nodelay"))},
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(&logBuf{}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	served := 0
	for range 10 {
		res, err := lim.Check(context.Background(), Subject{Key: "sk"}, 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			served++
		}
	}
	if served != 5 {
		t.Fatalf("served %d of 10 with redis down, want the share of 2 replicas: 5", served)
	}
}

func ptr[T any](v T) *T { return &v }
