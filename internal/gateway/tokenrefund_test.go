package gateway

import (
	"net/http"
	"strconv"
	"testing"

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
