package gateway

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

func breakerConfig(urls ...string) *config.Config {
	cfg := testConfig(urls...)
	cfg.Health.MaxFails = 0 // isolate the breaker from nginx-style ejection
	cfg.Breaker.MinRequests = 4
	cfg.Breaker.FailureRatio = 0.5
	cfg.Breaker.OpenFor = config.Duration(time.Minute)
	cfg.Retry.Attempts = 1
	return cfg
}

func TestBreakerOpensOnErrorsAndTakesBackendOut(t *testing.T) {
	failing := statusBackend(t, 500)
	good := newOKBackend(t)
	srv, gw := startGateway(t, breakerConfig(failing.URL, good.URL))
	var failed int
	for i := 0; i < 30; i++ {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if resp.StatusCode == 500 {
			failed++
		}
	}
	if failed != 4 {
		t.Fatalf("%d requests reached the failing backend, want min_requests=4 before the breaker opened", failed)
	}
	if st := gw.Runtime().Pools["m1"].Backends[0].State(time.Now()); st != endpoint.StateOpen {
		t.Fatalf("state %v, want open", st)
	}
}

func TestBreakerEjectionCapKeepsHalfThePool(t *testing.T) {
	a, b := statusBackend(t, 500), statusBackend(t, 500)
	srv, gw := startGateway(t, breakerConfig(a.URL, b.URL))
	for i := 0; i < 30; i++ {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	open := 0
	for _, be := range gw.Runtime().Pools["m1"].Backends {
		if be.State(time.Now()) == endpoint.StateOpen {
			open++
		}
	}
	if open != 1 {
		t.Fatalf("%d of 2 breakers open, want 1 (max_ejected_ratio 0.5)", open)
	}
}

func TestBackPressureNeverTripsBreakerNorLooksFast(t *testing.T) {
	busy := statusBackend(t, 503, "Retry-After", "1")
	srv, gw := startGateway(t, breakerConfig(busy.URL))
	for i := 0; i < 30; i++ {
		readAll(t, post(t, srv.URL+"/v1/chat/completions", chatBody))
	}
	be := gw.Runtime().Pools["m1"].Backends[0]
	if st := be.State(time.Now()); st == endpoint.StateOpen || st == endpoint.StateEjected {
		t.Fatalf("state %v after 503s with Retry-After: back-pressure tripped the breaker", st)
	}
	if lat := be.Latency(time.Now()); lat != 0 {
		t.Fatalf("latency estimate %v: fast refusals fed the latency EWMA", lat)
	}
}
