package health

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// stepClock is the checker's injected clock: it moves only when the test
// moves it, so a loaded test machine never looks like a stalled gateway
// and a stall is exactly what the test says.
type stepClock struct{ ns atomic.Int64 }

func (c *stepClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *stepClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func frozenClock() func() time.Time      { return new(stepClock).now }

// stallingClient is newClient whose every round trip, once it has ended
// (by the probe's deadline, for a hung backend), moves clock by stall: the
// gateway emulated stopped across the probe's deadline. The clock moves on
// the probe's side, after its deadline, whether or not the request reached
// the backend in time; moved from the backend's handler instead, a probe
// that a loaded machine delivered after its 20 ms deadline saw no stall
// (and a late handler moved the next round's clock).
func stallingClient(t *testing.T, clock *stepClock, stall time.Duration) *http.Client {
	t.Helper()
	c := newClient(t)
	c.Transport = stallAfter{next: c.Transport, clock: clock, stall: stall}
	return c
}

type stallAfter struct {
	next  http.RoundTripper
	clock *stepClock
	stall time.Duration
}

func (s stallAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	s.clock.add(s.stall)
	return resp, err
}
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	return "http://" + addr
}

// TestGatewayStallTakesNoBackendOut emulates a gateway stalled for three
// probe intervals with its probes out: every probe of every round times
// out, its deadline firing 15 s late on the gateway's monotonic clock.
// The backends that were only waiting for the gateway stay in the pool;
// a dead one beside them (connection refused: an answer, stall or not) is
// taken out after two rounds as before. Before the stall rule the two
// healthy backends went down at the second round, the whole pool with
// them.
func TestGatewayStallTakesNoBackendOut(t *testing.T) {
	clock := new(stepClock)
	const stall = 15 * time.Second // three default intervals
	var healthy []*endpoint.Backend
	for range 2 {
		srv := newFakeServer(t)
		srv.hang.Store(true) // the answer never gets read in time
		healthy = append(healthy, newBackend(t, srv.URL, ""))
	}
	dead := newBackend(t, refusedURL(t), "")
	var logs logbuf.Buffer
	var discountedMu sync.Mutex
	discounted := make(map[*endpoint.Backend]int)
	onDiscount := func(b *endpoint.Backend) {
		discountedMu.Lock()
		discounted[b]++
		discountedMu.Unlock()
	}
	c := NewChecker(Config{Timeout: 20 * time.Millisecond, Now: clock.now, OnDiscount: onDiscount}, stallingClient(t, clock, stall), slog.New(slog.NewTextHandler(&logs, nil)))
	pool := append(append([]*endpoint.Backend{}, healthy...), dead)
	for round := range 3 {
		c.ProbeOnce(t.Context(), pool)
		for i, b := range healthy {
			if !isUp(b) {
				t.Fatalf("round %d: healthy backend %d taken out by probes that timed out while the gateway was stalled", round+1, i)
			}
		}
	}
	if isUp(dead) {
		t.Error("the refusing backend is still up after three rounds: a stall must not hide an answer")
	}
	if got := strings.Count(logs.String(), "gateway itself was stalled"); got != 3 {
		t.Errorf("stall logged %d times, want once a round (3):\n%s", got, logs.String())
	}
	// Each discounted probe is told once, for its backend (the metric):
	// the refusing backend's answers were counted, so none of its.
	discountedMu.Lock()
	defer discountedMu.Unlock()
	for i, b := range healthy {
		if discounted[b] != 3 {
			t.Errorf("healthy backend %d: %d probes told discounted, want 3", i, discounted[b])
		}
	}
	if discounted[dead] != 0 {
		t.Errorf("refusing backend: %d probes told discounted, want 0", discounted[dead])
	}
}

// TestStallBound: a timed-out probe is the gateway's stall only when it
// ended more than 250 ms past its deadline, whatever the timeout; at the
// bound it is the backend's failure, two of which take it out.
func TestStallBound(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		elapsed time.Duration // on the checker's clock, from start to end
		wantUp  bool
	}{
		{"on time", 600 * time.Millisecond, 600 * time.Millisecond, false},
		{"at the bound", 600 * time.Millisecond, 850 * time.Millisecond, false},
		{"past the bound", 600 * time.Millisecond, 851 * time.Millisecond, true},
		{"short timeout: at the bound", 20 * time.Millisecond, 270 * time.Millisecond, false},
		{"short timeout: past the bound", 20 * time.Millisecond, 271 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := new(stepClock)
			srv := newFakeServer(t)
			srv.hang.Store(true)
			b := newBackend(t, srv.URL, "")
			c := NewChecker(Config{Timeout: tt.timeout, Now: clock.now}, stallingClient(t, clock, tt.elapsed), nil)
			for range 2 {
				c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
			}
			if got := isUp(b); got != tt.wantUp {
				t.Errorf("up after two timed-out probes %v apart on the clock = %v, want %v", tt.elapsed, got, tt.wantUp)
			}
		})
	}
}

// TestLateAtEveryRoundStillTakesHungBackendOut: a gateway late past the
// bound at every probe, round after round (a slow gateway, not a pause),
// must not keep a backend that accepts and never answers in the pool for
// good. At most maxDiscounted timeouts in a row go uncounted, so at fails
// 2 it is out after 2*(maxDiscounted+1) rounds, not before. Before the cap
// it stayed up whatever the number of rounds.
func TestLateAtEveryRoundStillTakesHungBackendOut(t *testing.T) {
	clock := new(stepClock)
	srv := newFakeServer(t)
	srv.hang.Store(true)
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: 20 * time.Millisecond, Fails: 2, Now: clock.now}, stallingClient(t, clock, time.Second), nil)
	const rounds = 2 * (maxDiscounted + 1)
	for round := 1; round <= rounds; round++ {
		c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
		if round < rounds && !isUp(b) {
			t.Fatalf("hung backend out at round %d: a stall of up to %d rounds must be passed over", round, maxDiscounted)
		}
	}
	if isUp(b) {
		t.Fatalf("hung backend still up after %d rounds of timeouts all ended ~1 s late", rounds)
	}
}
