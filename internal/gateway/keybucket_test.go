package gateway

import (
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// TestSubjectlessTokenHasItsOwnKeyBucket: a token naming no subject is
// counted by the per-key limits as its tenant, and that name was the
// bucket's too: the tokens of tenant claim "acme" without a subject
// ("jwt:acme") shared the per-key bucket of the token whose subject is
// "acme" ("jwt:acme" as well), so a user naming themselves after an
// organisation drained its bucket (or the other way round). With
// shared_tenants the subjectless tenant is "acme", the bucket of an API
// key literally "acme". The stand-in's bucket is now its own namespace
// ("key:" + tenant, a prefix no API key or token subject can take).
func TestSubjectlessTokenHasItsOwnKeyBucket(t *testing.T) {
	is := jwttest.New(t)
	be := newOKBackend(t)
	cfg := jwtConfig(is, be.URL)
	cfg.Auth.JWT.Claims.Tenant = "org"
	cfg.RateLimits.PerKey = config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=0 nodelay")}
	srv, _, _ := startLoggedGateway(t, cfg)
	claims := func(sub, org string) jwt.MapClaims {
		c := validClaims(jwt.MapClaims{"org": org})
		if sub == "" {
			delete(c, "sub")
		} else {
			c["sub"] = sub
		}
		return c
	}
	send := func(token string) int {
		resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "Authorization", "Bearer "+token)
		readAll(t, resp)
		return resp.StatusCode
	}
	org := is.RS256(t, claims("", "acme"))       // no subject: counted as its tenant jwt:acme
	user := is.RS256(t, claims("acme", "other")) // the subject acme: the key jwt:acme
	if got := send(org); got != http.StatusOK {
		t.Fatalf("the subjectless token's first request: %d", got)
	}
	if got := send(org); got != http.StatusTooManyRequests {
		t.Fatalf("the subjectless token's second request: %d, want 429 (1r/m)", got)
	}
	if got := send(user); got != http.StatusOK {
		t.Fatalf("the token of subject acme, first request: %d, want 200: it shares the subjectless tenant's bucket", got)
	}
}
