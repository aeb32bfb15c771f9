package health

import (
	"bytes"
	"context"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

// fakeServer is a real loopback backend whose health answer the test flips.
type fakeServer struct {
	*httptest.Server
	status  atomic.Int32 // status /health answers with
	hang    atomic.Bool  // block until the request is cancelled
	hits    atomic.Int32
	arrived chan string // "path|authorization" of each probe, if non-nil
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.status.Store(http.StatusOK)
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if f.arrived != nil {
		select { // never block the handler: Close would wait on it
		case f.arrived <- r.URL.RequestURI() + "|" + r.Header.Get("Authorization"):
		default:
		}
	}
	if f.hang.Load() {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(int(f.status.Load()))
	w.Write([]byte(strings.Repeat("ok", 512)))
}

// newClient gives each test its own transport so idle connections can be
// closed before checking for leaked goroutines.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func newBackend(t *testing.T, rawURL, apiKey string) *endpoint.Backend {
	t.Helper()
	b, err := endpoint.New(endpoint.Spec{URL: rawURL, APIKey: apiKey}, endpoint.HealthPolicy{})
	if err != nil {
		t.Fatalf("endpoint.New(%q): %v", rawURL, err)
	}
	return b
}

func isUp(b *endpoint.Backend) bool { return !probeDown(b) }

func TestProbeURL(t *testing.T) {
	tests := []struct {
		base, path, want string
	}{
		{"http://h:8000", "/health", "http://h:8000/health"},
		{"http://h:8000/", "/health", "http://h:8000/health"},
		{"http://h:8000/v1", "/health", "http://h:8000/v1/health"},
		{"https://h/team/a/", "/healthz", "https://h/team/a/healthz"},
		{"http://h:8000?x=1", "/health?full=1", "http://h:8000/health?full=1"},
	}
	for _, tt := range tests {
		b := newBackend(t, tt.base, "")
		if got := probeURL(b, tt.path); got != tt.want {
			t.Errorf("probeURL(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
		}
	}
}

func TestProbeSendsPathAndAuth(t *testing.T) {
	tests := []struct {
		name, prefix, key, path, want string
	}{
		{"defaults", "", "", "", "/health|"},
		{"prefix and key", "/v1", "sk-1", "/ready", "/v1/ready|Bearer sk-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.arrived = make(chan string, 1)
			c := NewChecker(Config{Timeout: healthyProbeBound, Path: tt.path}, newClient(t), nil)
			c.ProbeOnce(t.Context(), []*endpoint.Backend{newBackend(t, srv.URL+tt.prefix, tt.key)})
			if got := <-srv.arrived; got != tt.want {
				t.Errorf("probe arrived as %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFailsAndPasses walks a backend through status flips, one ProbeOnce per
// step, and checks nginx's fails/passes hysteresis.
func TestFailsAndPasses(t *testing.T) {
	type step struct {
		status int
		wantUp bool
	}
	tests := []struct {
		name          string
		fails, passes int
		steps         []step
	}{
		{"defaults: down after 2, up after 2", 0, 0, []step{
			{200, true}, {500, true}, {500, false}, {200, false}, {200, true},
		}},
		{"fails 3 passes 2", 3, 2, []step{
			{500, true}, {500, true}, {500, false},
			{200, false}, {500, false}, // a failure resets the pass run
			{200, false}, {200, true},
		}},
		{"a success resets the fail run", 2, 1, []step{
			{500, true}, {200, true}, {500, true}, {500, false}, {200, true},
		}},
		{"non-2xx fails, any 2xx passes", 1, 1, []step{
			{204, true}, {301, false}, {299, true}, {404, false}, {503, false}, {200, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			b := newBackend(t, srv.URL, "")
			var changes []bool
			c := NewChecker(Config{Timeout: healthyProbeBound, Fails: tt.fails, Passes: tt.passes, OnChange: func(_ *endpoint.Backend, up bool) {
				changes = append(changes, up)
			}}, newClient(t), nil)
			var wantChanges []bool
			prev := true
			for i, s := range tt.steps {
				srv.status.Store(int32(s.status))
				c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
				if got := isUp(b); got != s.wantUp {
					t.Fatalf("step %d (status %d): up = %v, want %v", i, s.status, got, s.wantUp)
				}
				if s.wantUp != prev {
					wantChanges = append(wantChanges, s.wantUp)
					prev = s.wantUp
				}
			}
			if !equalBools(changes, wantChanges) {
				t.Errorf("OnChange calls = %v, want %v", changes, wantChanges)
			}
			if b.Usable(time.Now()) != prev {
				t.Errorf("Usable = %v, want %v", b.Usable(time.Now()), prev)
			}
		})
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExpectStatus(t *testing.T) {
	srv := newFakeServer(t)
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: healthyProbeBound, ExpectStatus: http.StatusNoContent, Fails: 1}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("200 accepted although ExpectStatus is 204")
	}
	srv.status.Store(http.StatusNoContent)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if !isUp(b) {
		t.Fatal("204 rejected although ExpectStatus is 204")
	}
}

func TestTimeoutCountsAsFailure(t *testing.T) {
	srv := newFakeServer(t)
	srv.hang.Store(true)
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: 20 * time.Millisecond, Fails: 1, Now: frozenClock()}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("backend still up after a timed-out probe")
	}
}

func TestConnectErrorCountsAsFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	b := newBackend(t, "http://"+addr, "")
	c := NewChecker(Config{Timeout: healthyProbeBound, Fails: 1}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("backend still up after connection refused")
	}
}

// TestOneMissedProbeTakesNoBackendOut: at the defaults one failed probe
// (as when the gateway itself was starved past the probe's timeout)
// leaves the backend up; the second in a row takes it out. With the old
// default of 1 the first did: a 2 s stall of the gateway took every
// backend of a pool out at once (flakes10, RELIABILITY).
func TestOneMissedProbeTakesNoBackendOut(t *testing.T) {
	srv := newFakeServer(t)
	srv.hang.Store(true)
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: 20 * time.Millisecond, Now: frozenClock()}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if !isUp(b) {
		t.Fatal("one missed probe took the backend out")
	}
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("backend still up after two missed probes in a row")
	}
}

// TestBodyDrainedConnectionReused shows bodies are drained and closed: every
// probe reuses one keep-alive connection instead of opening a new one.
func TestBodyDrainedConnectionReused(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 4096))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: healthyProbeBound}, newClient(t), nil)
	for range 10 {
		c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 probes opened %d connections, want 1 (body not drained or closed?)", n)
	}
}

func TestLogsTransitionsWithBackendName(t *testing.T) {
	srv := newFakeServer(t)
	b := newBackend(t, srv.URL, "")
	var buf logbuf.Buffer
	c := NewChecker(Config{Timeout: healthyProbeBound, Passes: 1}, newClient(t), slog.New(slog.NewTextHandler(&buf, nil)))
	srv.status.Store(500)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b}) // still down: no second log line
	srv.status.Store(200)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	out := buf.String()
	if n := strings.Count(out, "backend="+b.Name()); n != 2 {
		t.Errorf("want 2 transition lines naming %s, got %d:\n%s", b.Name(), n, out)
	}
	if !strings.Contains(out, "level=WARN msg=\"backend down") || !strings.Contains(out, "level=INFO msg=\"backend up") {
		t.Errorf("missing down/up lines:\n%s", out)
	}
}

// TestStartsFromBackendState: a new Checker (after a reload) does not treat
// a backend that is probe-down as up.
func TestStartsFromBackendState(t *testing.T) {
	srv := newFakeServer(t)
	b := newBackend(t, srv.URL, "")
	b.SetProbeHealthy(false)
	c := NewChecker(Config{Timeout: healthyProbeBound, Passes: 2}, newClient(t), nil)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if isUp(b) {
		t.Fatal("up after one pass; Passes is 2")
	}
	c.ProbeOnce(t.Context(), []*endpoint.Backend{b})
	if !isUp(b) {
		t.Fatal("still down after two passes")
	}
}

func TestCountersDroppedForUnlistedBackends(t *testing.T) {
	srv := newFakeServer(t)
	a, b := newBackend(t, srv.URL, ""), newBackend(t, srv.URL, "")
	c := NewChecker(Config{Timeout: healthyProbeBound, Fails: 2}, newClient(t), nil)
	srv.status.Store(500)
	c.ProbeOnce(t.Context(), []*endpoint.Backend{a, b, b}) // duplicates probed once
	if got := srv.hits.Load(); got != 2 {
		t.Errorf("hits = %d, want 2 (duplicate backend probed twice?)", got)
	}
	c.ProbeOnce(t.Context(), []*endpoint.Backend{a})
	c.mu.Lock()
	_, hasB := c.tallies[b]
	n := len(c.tallies)
	c.mu.Unlock()
	if hasB || n != 1 {
		t.Fatalf("tallies: len %d, has dropped backend %v; want only a", n, hasB)
	}
	// b's one failure was forgotten: it needs two fresh failures to go down.
	c.ProbeOnce(t.Context(), []*endpoint.Backend{a, b})
	if !isUp(b) {
		t.Fatal("b went down on one failure after being re-listed")
	}
	if isUp(a) {
		t.Fatal("a should be down after 3 failures")
	}
}

func TestConcurrencyBound(t *testing.T) {
	var inflight, peak atomic.Int32
	arrived := make(chan struct{}, 16)
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		<-gate
	}))
	defer srv.Close()
	var bs []*endpoint.Backend
	for range 6 {
		bs = append(bs, newBackend(t, srv.URL, ""))
	}
	c := NewChecker(Config{Timeout: healthyProbeBound, Concurrency: 2}, newClient(t), nil)
	done := make(chan struct{})
	go func() { defer close(done); c.ProbeOnce(t.Context(), bs) }()
	<-arrived
	<-arrived
	close(gate)
	<-done
	if p := peak.Load(); p > 2 {
		t.Errorf("peak concurrent probes = %d, want <= 2", p)
	}
	if len(arrived) != 4 {
		t.Errorf("remaining probes = %d, want 4", len(arrived))
	}
}

// TestRunStopsOnCancel: cancelling ctx ends Run promptly even with a probe
// hanging on a backend, leaks no goroutine, and does not count the aborted
// probe as a failure.
func TestRunStopsOnCancel(t *testing.T) {
	defer leaktest.VerifyNone(t)
	srv := newFakeServer(t)
	srv.hang.Store(true)
	srv.arrived = make(chan string, 1)
	client := newClient(t)
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	c := NewChecker(Config{Interval: time.Hour, Timeout: time.Hour}, client, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx, func() []*endpoint.Backend { return []*endpoint.Backend{b} }) }()
	<-srv.arrived // the probe is now stuck on the server
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang guard, not the measure of "promptly"
		t.Fatal("Run did not return after cancel")
	}
	if !isUp(b) {
		t.Error("aborted probe was counted as a failure")
	}
}

// TestRunProbesEachInterval: Run keeps probing and picks up the current
// backend list every round.
func TestRunProbesEachInterval(t *testing.T) {
	defer leaktest.VerifyNone(t)
	srv := newFakeServer(t)
	srv.arrived = make(chan string, 16)
	client := newClient(t)
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	defer srv.Close()
	b := newBackend(t, srv.URL, "")
	var calls atomic.Int32
	c := NewChecker(Config{Timeout: healthyProbeBound, Interval: time.Millisecond}, client, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func() []*endpoint.Backend { calls.Add(1); return []*endpoint.Backend{b} })
	}()
	for range 3 {
		<-srv.arrived
	}
	cancel()
	<-done
	if n := calls.Load(); n < 3 {
		t.Errorf("backends() called %d times, want once per round (>= 3)", n)
	}
}

// healthyProbeBound bounds probes that are meant to succeed: long enough
// for any loaded test machine, so only a probe meant to time out (against
// a server that never answers) ever does.
const healthyProbeBound = time.Minute
