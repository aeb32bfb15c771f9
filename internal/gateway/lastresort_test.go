package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// flakyBackend answers 500 while fail is set, else a completion; a request
// arriving while hold is set is reported on held and waits for release.
type flakyBackend struct {
	url      string
	fail     atomic.Bool
	hold     atomic.Bool
	calls    atomic.Int32
	held     chan struct{}
	release  chan struct{}
	released sync.Once
}

func newFlakyBackend(t *testing.T) *flakyBackend {
	fb := &flakyBackend{held: make(chan struct{}, 1), release: make(chan struct{})}
	fb.url = httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fb.calls.Add(1)
		io.Copy(io.Discard, r.Body)
		if fb.hold.Load() {
			fb.held <- struct{}{}
			<-fb.release
		}
		w.Header().Set("Content-Type", "application/json")
		if fb.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"boom","type":"server_error","code":null}}`)
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(fb.unblock)
	return fb
}

func (fb *flakyBackend) unblock() { fb.released.Do(func() { close(fb.release) }) }

// lastResortConfig is testConfig with passive ejection for an hour after
// maxFails failures: nothing here waits for an ejection to end.
func lastResortConfig(maxFails int, urls ...string) *config.Config {
	cfg := testConfig(urls...)
	cfg.Health.MaxFails = maxFails
	cfg.Health.FailTimeout = config.Duration(time.Hour)
	return cfg
}

// ejectedOnlyBackend starts a gateway over one backend, max_fails 1, and
// ejects it with its 500; the backend is still failing.
func ejectedOnlyBackend(t *testing.T) (*flakyBackend, *httptest.Server, *Gateway) {
	t.Helper()
	fb := newFlakyBackend(t)
	fb.fail.Store(true)
	srv, gw := startGateway(t, lastResortConfig(1, fb.url))
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
		t.Fatalf("status %d, want the backend's 500", st)
	}
	return fb, srv, gw
}

func chatStatus(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp := post(t, url+"/v1/chat/completions", chatBody)
	body := readAll(t, resp)
	code := ""
	if resp.StatusCode == http.StatusServiceUnavailable {
		_, code, _ = apiErr(t, body)
	}
	return resp.StatusCode, code, resp.Header.Get("Retry-After")
}

// The audit's case: the only backend answered 3 × 500 (max_fails: 3) and
// recovered; the pool used to answer 503 no_healthy_backend for the whole
// fail_timeout. Its next request is a trial, served; its success ends the
// ejection.
func TestOnlyBackendEjectedPassivelyIsTried(t *testing.T) {
	fb := newFlakyBackend(t)
	fb.fail.Store(true)
	srv, gw := startGateway(t, lastResortConfig(3, fb.url))
	for i := range 3 {
		if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
			t.Fatalf("request %d: status %d, want the backend's 500", i, st)
		}
	}
	b := gw.Runtime().Pools["m1"].Backends[0]
	if b.Usable(time.Now()) {
		t.Fatal("three 500s did not eject the backend")
	}
	fb.fail.Store(false)
	for i := range 3 {
		if st, code, _ := chatStatus(t, srv.URL); st != http.StatusOK {
			t.Fatalf("request %d after recovery: status %d %s, want 200", i, st, code)
		}
	}
	if !b.Usable(time.Now()) {
		t.Fatal("the trial's success did not end the ejection")
	}
	if got := fb.calls.Load(); got != 6 {
		t.Fatalf("backend calls = %d, want 6", got)
	}
}

// Every backend of the pool ejected passively: trials, including a retry
// onto the other ejected backend when the first refuses the connection.
// A failed trial keeps the ejection.
func TestEveryBackendEjectedPassivelyGetsTrials(t *testing.T) {
	fb := newFlakyBackend(t)
	fb.fail.Store(true)
	dead := closedURL(t)
	cfg := lastResortConfig(1, dead, fb.url)
	cfg.Retry.MinPerSecond = 100
	srv, gw := startGateway(t, cfg)
	pool := gw.Runtime().Pools["m1"]
	// Round robin starts on the dead backend: refused, retried on fb, 500.
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
		t.Fatalf("first request: status %d, want the backend's 500", st)
	}
	for i, b := range pool.Backends {
		if b.Usable(time.Now()) {
			t.Fatalf("backend %d not ejected", i)
		}
	}
	// Still failing: a trial reaches a backend (fb's 500, or the dead one
	// refused and the retry on fb), the ejections stay.
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
		t.Fatalf("failed trial: status %d, want the backend's 500", st)
	}
	if fb.calls.Load() != 2 || pool.Backends[1].Usable(time.Now()) {
		t.Fatalf("after a failed trial: fb calls %d (want 2), usable %v (want ejected)", fb.calls.Load(), pool.Backends[1].Usable(time.Now()))
	}
	fb.fail.Store(false)
	for i := range 4 {
		if st, code, _ := chatStatus(t, srv.URL); st != http.StatusOK {
			t.Fatalf("request %d after recovery: status %d %s, want 200", i, st, code)
		}
	}
	if !pool.Backends[1].Usable(time.Now()) || pool.Backends[0].Usable(time.Now()) {
		t.Fatal("want fb back in rotation, the dead backend still ejected")
	}
}

// A backend held down by the active health check is never tried, even when
// it is also ejected passively; the 503 says 5 s (no return time known).
func TestProbeDownBackendIsNotTried(t *testing.T) {
	fb, srv, gw := ejectedOnlyBackend(t)
	fb.fail.Store(false)
	gw.Runtime().Pools["m1"].Backends[0].SetProbeHealthy(false)
	for i := range 3 {
		st, code, ra := chatStatus(t, srv.URL)
		if st != http.StatusServiceUnavailable || code != "no_healthy_backend" || ra != "5" {
			t.Fatalf("request %d: %d %s Retry-After %q, want 503 no_healthy_backend 5", i, st, code, ra)
		}
	}
	if got := fb.calls.Load(); got != 1 {
		t.Fatalf("probe-down backend called %d times, want 1 (before it went down)", got)
	}
}

// One trial at a time per backend: while the trial hangs, the next request
// is refused with Retry-After 1 (the trial's answer is due), not the
// constant 5; once the trial succeeds the backend serves.
func TestTrialInFlightRetryAfter(t *testing.T) {
	fb, srv, _ := ejectedOnlyBackend(t)
	fb.fail.Store(false)
	fb.hold.Store(true)
	trial := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
		if err != nil {
			trial <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		trial <- resp.StatusCode
	}()
	select {
	case <-fb.held:
	case st := <-trial:
		t.Fatalf("the trial did not reach the backend: status %d", st)
	}
	fb.hold.Store(false)
	st, code, ra := chatStatus(t, srv.URL)
	if st != http.StatusServiceUnavailable || code != "no_healthy_backend" || ra != "1" {
		t.Fatalf("during the trial: %d %s Retry-After %q, want 503 no_healthy_backend 1", st, code, ra)
	}
	fb.unblock()
	if st := <-trial; st != http.StatusOK {
		t.Fatalf("trial: status %d, want 200", st)
	}
	if st, code, _ := chatStatus(t, srv.URL); st != http.StatusOK {
		t.Fatalf("after the trial: %d %s, want 200", st, code)
	}
}

// A backend both ejected passively and behind an open breaker is not tried
// (the breaker's own half-open trial decides), and the 503's Retry-After is
// the time until the later of the two ends, on the gateway's clock.
func TestNoBackendRetryAfterIsTheEarliestReturn(t *testing.T) {
	fb := newFlakyBackend(t)
	fb.fail.Store(true)
	cfg := lastResortConfig(1, fb.url)
	cfg.Health.FailTimeout = config.Duration(4 * time.Second)
	cfg.Breaker.MinRequests = 1
	cfg.Breaker.OpenFor = config.Duration(20 * time.Second)
	cfg.Breaker.MaxEjectedRatio = 1
	var clock atomic.Int64
	t0 := time.Unix(1_800_000_000, 0)
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = now })
	if st, _, _ := chatStatus(t, srv.URL); st != http.StatusInternalServerError {
		t.Fatalf("status %d, want the backend's 500", st)
	}
	fb.fail.Store(false)
	for _, c := range []struct {
		at   time.Duration
		want string
	}{{time.Second, "19"}, {5 * time.Second, "15"}, {19*time.Second + 500*time.Millisecond, "1"}} {
		clock.Store(t0.Add(c.at).UnixNano())
		st, code, ra := chatStatus(t, srv.URL)
		if st != http.StatusServiceUnavailable || code != "no_healthy_backend" || ra != c.want {
			t.Fatalf("at t0+%v: %d %s Retry-After %q, want 503 no_healthy_backend %s", c.at, st, code, ra, c.want)
		}
	}
	if got := fb.calls.Load(); got != 1 {
		t.Fatalf("backend called %d times while its breaker was open, want 1", got)
	}
	clock.Store(t0.Add(20 * time.Second).UnixNano()) // half-open: its probe serves
	if st, code, _ := chatStatus(t, srv.URL); st != http.StatusOK {
		t.Fatalf("after open_for: %d %s, want 200", st, code)
	}
}

// A backend back from its passive ejection (fail_timeout passed, on the
// gateway's clock) and still failing is ejected again by its first
// failure, as nginx does, not after max_fails new ones: one client error
// per fail_timeout, not three. Once it answers, max_fails counts afresh.
func TestFailureAfterEjectionEjectsAgain(t *testing.T) {
	good, fb := newFlakyBackend(t), newFlakyBackend(t)
	fb.fail.Store(true)
	cfg := lastResortConfig(3, good.url, fb.url)
	cfg.Health.FailTimeout = config.Duration(10 * time.Second)
	var clock atomic.Int64
	t0 := time.Unix(1_800_000_000, 0)
	clock.Store(t0.UnixNano())
	at := func(d time.Duration) { clock.Store(t0.Add(d).UnixNano()) }
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	// countErrors sends n requests and counts the backend's 500s among them.
	countErrors := func(n int) int {
		failed := 0
		for range n {
			switch st, code, _ := chatStatus(t, srv.URL); st {
			case http.StatusOK:
			case http.StatusInternalServerError:
				failed++
			default:
				t.Fatalf("status %d %s, want 200 or the backend's 500", st, code)
			}
		}
		return failed
	}
	if got := countErrors(10); got != 3 || fb.calls.Load() != 3 {
		t.Fatalf("before the ejection: %d errors, %d calls to the failing backend; want 3, 3", got, fb.calls.Load())
	}
	at(11 * time.Second) // the ejection has ended; the backend still fails
	if got := countErrors(10); got != 1 || fb.calls.Load() != 4 {
		t.Fatalf("after the ejection: %d errors, %d calls to the failing backend; want 1 (ejected again by it), 4", got, fb.calls.Load())
	}
	at(20 * time.Second) // within fail_timeout of that failure: still out
	if got := countErrors(4); got != 0 || fb.calls.Load() != 4 {
		t.Fatalf("9 s after the re-ejection: %d errors, %d calls; want 0, 4", got, fb.calls.Load())
	}
	at(22 * time.Second)
	fb.fail.Store(false)
	if got := countErrors(4); got != 0 || fb.calls.Load() != 6 {
		t.Fatalf("recovered: %d errors, %d calls; want 0, 6", got, fb.calls.Load())
	}
	fb.fail.Store(true) // answered since: max_fails counts again
	if got := countErrors(10); got != 3 {
		t.Fatalf("failing after it answered: %d errors, want 3 (max_fails)", got)
	}
}
