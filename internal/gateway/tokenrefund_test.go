package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
)

// A request refused after its rate limits were charged and before any
// backend was sent it (here: no healthy backend, 503 with Retry-After 5)
// gives its token reservation back. Before, each such refusal kept its
// whole estimate (prompt/4 + max_tokens): four retries of a 200-token
// request against a down pool spent 872 of a key's 1000 tokens a minute,
// and a client that obeyed Retry-After and came back when the pool did got
// a 429 for tokens no backend ever spent.
func TestUnreachedRequestsGiveTheirTokensBack(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "ta"}}}
	tpm := int64(1000)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
	srv, gw := startGateway(t, cfg)
	b := gw.Runtime().Pools["m1"].Backends[0]
	body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":200}`
	url := srv.URL + "/v1/chat/completions"
	b.SetProbeHealthy(false)
	for i := 0; i < 6; i++ {
		resp := post(t, url, body, "Authorization", "Bearer sk-a")
		rb := readAll(t, resp)
		if _, code, _ := apiErr(t, rb); resp.StatusCode != http.StatusServiceUnavailable || code != "no_healthy_backend" {
			t.Fatalf("down pool, request %d: %d %s, want 503 no_healthy_backend", i, resp.StatusCode, code)
		}
		// Each sees only its own reservation: the ones before were given back.
		if rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); rem < 700 {
			t.Fatalf("down pool, request %d: remaining tokens %d, want the earlier reservations given back", i, rem)
		}
	}
	b.SetProbeHealthy(true)
	resp := post(t, url, body, "Authorization", "Bearer sk-a")
	if rb := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("pool back: %d %s, want 200", resp.StatusCode, rb)
	}
}

// A client that leaves while a limit without nodelay holds its request
// back (nginx's delayed excess) gets its token reservation back too: no
// backend is sent the request. Before, the whole estimate stayed charged.
func TestRequestLeftDuringItsDelayGivesItsTokensBack(t *testing.T) {
	be := newOKBackend(t)
	cfg := testConfig(be.URL)
	cfg.Auth = config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "ta"}}, TrustedProxies: []string{"127.0.0.1"}}
	tpm := int64(1000)
	cfg.RateLimits.PerKey = config.RateRule{TokensPerMinute: &tpm}
	// One request a minute per address, one more delayed behind it.
	cfg.RateLimits.PerIP = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=1")}
	var reg *prometheus.Registry
	srv, _ := startGatewayWith(t, cfg, func(d *Deps) { reg = d.Registry.(*prometheus.Registry) })
	url := srv.URL + "/v1/chat/completions"
	send := func(ctx context.Context, from string, maxTokens int) (*http.Response, error) {
		body := `{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":` + strconv.Itoa(maxTokens) + `}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-a")
		req.Header.Set("X-Forwarded-For", from)
		return http.DefaultClient.Do(req)
	}
	resp, err := send(context.Background(), "10.0.0.1", 5)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		resp, err := send(ctx, "10.0.0.1", 500) // delayed a minute, 500+ tokens reserved
		if err == nil {
			resp.Body.Close()
		}
		left <- err
	}()
	eventually(t, "the second request delayed", func() bool {
		return metricValueOrZero(t, reg, "sluice_ratelimit_checks_total", "result", "delayed", "scope", "", "kind", "") == 1
	})
	if n := metricValueOrZero(t, reg, "sluice_inflight_requests"); n != 1 {
		t.Fatalf("in flight while delayed: %v, want 1", n)
	}
	cancel()
	if err := <-left; err == nil {
		t.Fatal("the delayed request was answered")
	}
	// The gateway learns of the leave on its own time (a loaded machine:
	// seconds); its reservation is settled before the request stops
	// counting as in flight (record: settle, then the gauge). Probing
	// before that, every probe's own tokens were spent too: a dozen probes
	// put the key below the bound for good, and the test timed out under
	// load.
	eventually(t, "the delayed request ended at the gateway", func() bool {
		return metricValueOrZero(t, reg, "sluice_inflight_requests") == 0
	})
	// From another address (not delayed), the key's tokens: all but the
	// first request's 7 and the probe's own few once the delayed one is
	// given back.
	resp, err = send(context.Background(), "10.0.1.1", 5)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); resp.StatusCode != http.StatusOK || rem <= 900 {
		t.Fatalf("after the delayed request left: %d, remaining tokens %d, want 200 and over 900", resp.StatusCode, rem)
	}
}
