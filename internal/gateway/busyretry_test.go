package gateway

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// busyBackend answers every request 429 with Retry-After: retryAfter.
func busyBackend(t *testing.T, retryAfter string) string {
	return httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"busy","type":"rate_limit_error","code":null}}`)
	}))
}

// busyPool starts a gateway, on a clock that stands still, over two
// backends that push back: one with Retry-After 20, one with 30.
func busyPool(t *testing.T, attempts int) (url, soon string) {
	soon = busyBackend(t, "20")
	cfg := testConfig(busyBackend(t, "30"), soon)
	cfg.Retry.Attempts = attempts
	cfg.Retry.MinPerSecond = 100
	t0 := time.Unix(1_800_000_000, 0)
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = func() time.Time { return t0 } })
	return srv.URL, soon
}

// Every backend pushed back: the client is told the soonest Retry-After
// any of them gave, whichever was tried last (the old code relayed the
// last one's: 30 s for half the requests while a backend is back in 20).
func TestAllBusyRelaysTheSoonestRetryAfter(t *testing.T) {
	url, _ := busyPool(t, 3)
	for i := range 4 {
		resp := post(t, url+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "20" {
			t.Fatalf("request %d: %d Retry-After %q, want 429 with the soonest, 20", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

// With every backend busy, the next request goes first to the one whose
// Retry-After ends first, not to whichever the policy's turn names.
func TestAllBusyTriesTheSoonestBackFirst(t *testing.T) {
	url, soon := busyPool(t, 1)
	for range 2 { // one attempt each: both backends push back once
		readAll(t, post(t, url+"/v1/chat/completions", chatBody))
	}
	for i := range 4 {
		resp := post(t, url+"/v1/chat/completions", chatBody)
		readAll(t, resp)
		if got := "http://" + resp.Header.Get("X-Sluice-Backend"); got != soon || resp.Header.Get("Retry-After") != "20" {
			t.Fatalf("request %d: answered by %s (Retry-After %q), want %s, the soonest back", i, got, resp.Header.Get("Retry-After"), soon)
		}
	}
}

// A retry that finds no backend left is not one: it neither counts nor
// spends the retry budget. Two backends answering 502, three attempts, a
// budget of 2.2 tokens on a clock that stands still: the old code spent
// a token on the third attempt, which had nowhere to go, so the second
// request could not retry (3 backend calls, not 4).
func TestRetryWithNoBackendLeftSpendsNoBudget(t *testing.T) {
	var calls atomic.Int32
	bad := func() string {
		return httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusBadGateway)
		}))
	}
	cfg := testConfig(bad(), bad())
	cfg.Retry.Attempts = 3
	cfg.Retry.BudgetRatio = 0.2
	cfg.Retry.MinPerSecond = 2
	cfg.Health.MaxFails = 0
	cfg.Breaker.Enabled = false
	t0 := time.Unix(1_800_000_000, 0)
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = func() time.Time { return t0 } })
	for i := range 2 {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
		if readAll(t, resp); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request %d: status %d, want 502", i, resp.StatusCode)
		}
	}
	if got := calls.Load(); got != 4 {
		t.Fatalf("backend calls = %d, want 4: each request tried both backends", got)
	}
}

// A backend that pushes back without Retry-After is taken to be busy for
// health.busy_penalty (it is asked last that long), and when every
// backend pushed back the client is told the soonest any is back on
// those terms: busy_penalty for a blind one, not 1 s whatever the
// penalty (the old code said 1, and ranked a blind answer before one
// saying 2 s while counting its backend busy for 5).
func TestAllBusyBlindOnesToldTheirBusyPenalty(t *testing.T) {
	for _, tc := range []struct {
		name    string
		penalty time.Duration
		sayer   string // the other backend's Retry-After; "" none
		want    string
	}{
		{"both blind, penalty 3s", 3 * time.Second, "", "3"},
		{"blind with penalty 5s, other 2s", 5 * time.Second, "2", "2"},
		{"blind with penalty 1s, other 30s", time.Second, "30", "1"},
		{"both blind, penalty 1.5s", 1500 * time.Millisecond, "", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := statusBackend(t, 429).URL
			if tc.sayer != "" {
				other = busyBackend(t, tc.sayer)
			}
			cfg := testConfig(statusBackend(t, 429).URL, other)
			cfg.Retry.Attempts = 2
			cfg.Retry.MinPerSecond = 100
			cfg.Health.BusyPenalty = config.Duration(tc.penalty)
			t0 := time.Unix(1_800_000_000, 0)
			srv, _ := startGatewayWith(t, cfg, func(d *Deps) { d.Now = func() time.Time { return t0 } })
			for i := range 3 {
				resp := post(t, srv.URL+"/v1/chat/completions", chatBody)
				readAll(t, resp)
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != tc.want {
					t.Fatalf("request %d: %d Retry-After %q, want 429 with %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), tc.want)
				}
			}
		})
	}
}
