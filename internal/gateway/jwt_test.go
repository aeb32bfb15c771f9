package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

const (
	jwtIssuer   = "https://idp.test/"
	jwtAudience = "sluice"
)

// jwtConfig is testConfig with auth.jwt over is's key set and an API key
// beside it.
func jwtConfig(is *jwttest.Issuer, backend string) *config.Config {
	cfg := testConfig(backend)
	cfg.Auth.JWT.JWKSURL, cfg.Auth.JWT.Issuer, cfg.Auth.JWT.Audience = is.URL(), jwtIssuer, jwtAudience
	cfg.Auth.Keys = []config.Tenant{{Key: "sk-team", Tenant: "team"}}
	return cfg
}

// lockedBuffer is a log sink tests read while the gateway writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startLoggedGateway is startGateway with the access log on, into a buffer.
func startLoggedGateway(t *testing.T, cfg *config.Config) (*httptest.Server, *Gateway, *lockedBuffer) {
	t.Helper()
	cfg.Log.Access = true
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	deps := Deps{Logger: log, Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	gw := New(rt, Options{Logger: log, Registry: reg, Now: deps.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		deps.Transport.CloseIdle()
		rt.Retire(nil)
	})
	return srv, gw, logs
}

func validClaims(extra jwt.MapClaims) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": jwtIssuer, "aud": jwtAudience, "sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// Every bad token gets the same 401 in the OpenAI error shape, with RFC
// 6750's challenge and nothing that says which check failed; the reason
// is on the access line and in sluice_auth_failures_total. Times are an
// hour off, far beyond the leeway, so a slow machine changes nothing.
func TestBadTokensGetOneGeneric401(t *testing.T) {
	is := jwttest.New(t)
	be := newOKBackend(t)
	cfg := jwtConfig(is, be.URL)
	cfg.Auth.JWT.JWKSMinRefresh = config.Duration(time.Hour)
	srv, gw, logs := startLoggedGateway(t, cfg)
	hour := time.Hour
	confusion := jwttest.Sign(t, jwt.SigningMethodHS256, is.RSAPublicPEM(t), jwttest.RSAKID, validClaims(nil))
	none := jwttest.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", validClaims(nil))
	good := strings.Split(is.RS256(t, validClaims(nil)), ".")
	forged := strings.Split(is.RS256(t, validClaims(jwt.MapClaims{"sub": "root"})), ".")
	cases := []struct {
		name, token, reason string
	}{
		{"algorithm confusion", confusion, "algorithm"},
		{"none", none, "algorithm"},
		{"expired", is.RS256(t, validClaims(jwt.MapClaims{"exp": time.Now().Add(-hour).Unix()})), "expired"},
		{"not yet valid", is.ES256(t, validClaims(jwt.MapClaims{"nbf": time.Now().Add(hour).Unix()})), "not_yet_valid"},
		{"wrong audience", is.RS256(t, validClaims(jwt.MapClaims{"aud": "other-service"})), "audience"},
		{"wrong issuer", is.ES256(t, validClaims(jwt.MapClaims{"iss": "https://evil.test/"})), "issuer"},
		{"unknown kid", jwttest.Sign(t, jwt.SigningMethodRS256, is.RSA, "kid-9", validClaims(nil)), "unknown_kid"},
		{"tampered", good[0] + "." + forged[1] + "." + good[2], "signature"},
		{"oversized", is.RS256(t, validClaims(jwt.MapClaims{"pad": strings.Repeat("p", 10<<10)})), "oversized"},
	}
	var message string
	for _, c := range cases {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer "+c.token, "X-Request-Id", "req-"+strings.ReplaceAll(c.name, " ", "-"))
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status %d: %s", c.name, resp.StatusCode, body)
		}
		typ, code, msg := apiErr(t, body)
		if typ != "invalid_request_error" || code != "invalid_api_key" {
			t.Fatalf("%s: type %q code %q", c.name, typ, code)
		}
		if message == "" {
			message = msg
		}
		if msg != message {
			t.Fatalf("%s: message %q differs from %q: it tells which check failed", c.name, msg, message)
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Fatalf("%s: WWW-Authenticate %q", c.name, got)
		}
		if !strings.Contains(logs.String(), `"request_id":"req-`+strings.ReplaceAll(c.name, " ", "-")+`"`) ||
			!strings.Contains(logs.String(), "token refused: "+c.reason) {
			t.Fatalf("%s: access log lacks the reason %q:\n%s", c.name, c.reason, logs.String())
		}
	}
	if n := be.calls.Load(); n != 0 {
		t.Fatalf("the backend was called %d times", n)
	}
	metrics := scrape(t, adminServer(t, gw).URL+"/metrics")
	for _, c := range cases {
		want := `sluice_auth_failures_total{reason="` + c.reason + `"}`
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	// The single form's issuer has no name: issuer="", which Prometheus
	// stores as the unlabelled series of before.
	if !strings.Contains(metrics, `sluice_auth_jwks_last_fetch_timestamp_seconds{issuer=""} 1`) { // a recent Unix time, not 0
		t.Fatalf("key set freshness missing or zero:\n%s", metrics)
	}
	if is.Hits() != 2 { // the start, and one refresh for the unknown kid
		t.Fatalf("key set fetched %d times, want 2", is.Hits())
	}
	// An API key still works beside JWTs; a made-up one is refused and
	// counted apart.
	if resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer sk-team"); readAll(t, resp) == "" || resp.StatusCode != 200 {
		t.Fatalf("API key: %d", resp.StatusCode)
	}
	resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer sk-made-up")
	if readAll(t, resp); resp.StatusCode != 401 || !strings.Contains(scrape(t, adminServer(t, gw).URL+"/metrics"), `sluice_auth_failures_total{reason="invalid_api_key"} 1`) {
		t.Fatalf("made-up key: %d", resp.StatusCode)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A verified token is served as the tenant its claims name, with the
// weight, priority ceiling, fallback rule and limits they carry, as an API
// key's entry would give.
func TestTokenClaimsBecomeTheIdentity(t *testing.T) {
	is := jwttest.New(t)
	c := config.Default().Auth.JWT
	c.JWKSURL, c.Issuer, c.Audience = is.URL(), jwtIssuer, jwtAudience
	c.Claims.Tenant = "org"
	jwks := auth.NewJWKS(auth.JWKSSettingsOf(c), nil, time.Now)
	t.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(c, jwks, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tn := newTenants(config.Auth{JWT: c}, v)
	identify := func(token, priority string) identity {
		t.Helper()
		r := httptest.NewRequest("POST", "/v1/chat/completions", nil).WithContext(context.Background())
		r.Header.Set("Authorization", "Bearer "+token)
		if priority != "" {
			r.Header.Set("X-Sluice-Priority", priority)
		}
		id, err := tn.identify(r, "1.2.3.4")
		if err != nil {
			t.Fatalf("identify: %v", err)
		}
		return id
	}
	id := identify(is.ES256(t, validClaims(jwt.MapClaims{"org": "acme", "sluice_weight": 3, "sluice_max_priority": "batch",
		"sluice_no_fallback": true, "sluice_tokens_per_minute": 1000})), "interactive")
	if id.tenant != "jwt:acme" || id.key != "jwt:alice" || id.weight != 3 || id.class != admission.Batch || id.fallback ||
		id.keyRule == nil || id.keyRule.TokensPerMinute != 1000 {
		t.Fatalf("identity %+v", id)
	}
	id = identify(is.RS256(t, validClaims(jwt.MapClaims{"org": "acme", "sluice_priority": "batch"})), "interactive")
	if id.class != admission.Interactive || id.weight != 1 || !id.fallback || id.keyRule != nil {
		t.Fatalf("defaults: %+v", id) // a batch default may be raised to the (default) interactive ceiling
	}
}

// Limits from a token's claims bind its subject; rate_limits.keys binds
// "jwt:<subject>" and rate_limits.tenants the tenant its claims name, as
// for an API key and its tenant.
func TestTokenLimitsApply(t *testing.T) {
	is := jwttest.New(t)
	be := newOKBackend(t)
	cfg := jwtConfig(is, be.URL)
	cfg.RateLimits.Tenants = map[string]config.RateRule{"capped": {Requests: limitPtr(t, "rate=1r/m nodelay")}}
	cfg.RateLimits.Keys = map[string]config.RateRule{"jwt:dave": {Requests: limitPtr(t, "rate=1r/m nodelay")}}
	srv, _ := startGateway(t, cfg)
	send := func(token string) int {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer "+token)
		readAll(t, resp)
		return resp.StatusCode
	}
	own := is.RS256(t, validClaims(jwt.MapClaims{"sub": "bob", "sluice_requests": "1r/m nodelay"}))
	if a, b := send(own), send(own); a != 200 || b != 429 {
		t.Fatalf("claimed limit 1r/m: %d %d, want 200 429", a, b)
	}
	free := is.RS256(t, validClaims(jwt.MapClaims{"sub": "carol"}))
	if a, b := send(free), send(free); a != 200 || b != 200 {
		t.Fatalf("no limit claimed: %d %d", a, b)
	}
	dave := is.RS256(t, validClaims(jwt.MapClaims{"sub": "dave"}))
	if a, b := send(dave), send(dave); a != 200 || b != 429 {
		t.Fatalf("rate_limits.keys[jwt:dave]: %d %d, want 200 429", a, b)
	}
	capped := is.ES256(t, validClaims(jwt.MapClaims{"sub": "capped"}))
	if a, b := send(capped), send(capped); a != 200 || b != 429 {
		t.Fatalf("rate_limits.tenants[capped]: %d %d, want 200 429", a, b)
	}
}
