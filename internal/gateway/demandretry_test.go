package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A client refused with Retry-After sends the same request back, as the
// OpenAI SDKs do: that is the demand counted once, not a new request. The
// retries counted as arrivals made 24 clients retrying into 6 slots read
// as twice the requests the pool served (desired backends for the
// attempts, not the clients). The refused client is awaited instead: it
// counts as a client waiting for the pool until its Retry-After and the
// grace have passed. The same body as another client's first attempt
// (x-stainless-retry-count: 0), or after the grace, is new demand.
func TestRefusedRequestsRetryIsNotNewDemand(t *testing.T) {
	fc := &arrivalLog{}
	clk, srv, admin := busyGateway(t, time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), fc)
	url := srv.URL + "/v1/chat/completions"

	send := func(body string, hdr ...string) {
		t.Helper()
		resp := post(t, url, body, hdr...)
		if readAll(t, resp); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want the backend's 503", resp.StatusCode)
		}
	}
	check := func(when string, arrivals float64, awaited int) {
		t.Helper()
		s := readSignal(t, admin, "m1")
		if n := s.ArrivalRequestsPerSecond * 600; n < arrivals-0.1 || n > arrivals+0.0001 {
			t.Errorf("%s: arrivals × window %.3f, want %v", when, n, arrivals)
		}
		fc.mu.Lock()
		got := len(fc.got)
		fc.mu.Unlock()
		if got != int(arrivals) {
			t.Errorf("%s: the forecast was told of %d arrivals, want %v", when, got, arrivals)
		}
		if s.AwaitedClients != awaited || awaited > 0 && s.InFlightBackends <= 0 {
			t.Errorf("%s: awaited clients %d (in flight %.3f backends), want %d", when, s.AwaitedClients, s.InFlightBackends, awaited)
		}
	}

	// One client, refused four times, back each time after Retry-After.
	for try := range 4 {
		send(chatBody, "X-Stainless-Retry-Count", string(rune('0'+try)))
		clk.Add(time.Second)
	}
	check("one client retrying", 1, 1)

	// Another client's first attempt with the same body is new demand.
	send(chatBody, "X-Stainless-Retry-Count", "0")
	check("a second client's first attempt", 2, 1)

	// An Idempotency-Key names the request across retries: two attempts
	// of one key are one request; another key is another.
	other := `{"model":"m1","messages":[{"role":"user","content":"other"}],"max_tokens":4}`
	send(other, "Idempotency-Key", "k1")
	send(other, "Idempotency-Key", "k1")
	send(other, "Idempotency-Key", "k2")
	check("idempotency keys", 4, 3)

	// Past Retry-After and the grace the clients gave up: no longer
	// awaited, and the same request again is new demand.
	clk.Add(time.Second + scaling.AwaitGrace + time.Millisecond)
	check("after the grace", 4, 0)
	send(chatBody)
	check("the same body after the grace", 5, 1)
}

// busyGateway is a gateway over one backend that refuses everything 503
// with Retry-After 1, no retries, a 10-minute scaling window, on a fake
// clock starting at start; arrivals (may be nil) sees the arrivals. It
// returns the clock, the gateway's server and its admin listener's URL.
func busyGateway(t *testing.T, start time.Time, arrivals Arrivals) (*testClock, *httptest.Server, string) {
	t.Helper()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	cfg := testConfig(busy.URL)
	cfg.Retry.Attempts = 1
	cfg.Scaling.Window = config.Duration(10 * time.Minute)
	clk := &testClock{t: start}
	deps := Deps{Transport: proxy.NewTransportCache(), Now: clk.Now, Rand: routing.NewRand(1), Registry: prometheus.NewRegistry()}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), Now: clk.Now, Arrivals: arrivals})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle(); rt.Retire(nil) })
	return clk, srv, adminServer(t, gw).URL
}
