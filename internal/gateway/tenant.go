package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// identity is who a request is from, as far as fairness, priority and
// limits are concerned.
type identity struct {
	// key is the configured API key presented; "" for anonymous callers
	// (no key, or open mode, where a presented key identifies nobody).
	key string
	// listed: key is an auth.keys entry (not a token's subject), whose
	// removal by a reload ends the request (keyRequests).
	listed bool
	// digest is key's SHA-256, by which identify found it among the listed
	// keys (set when listed): trackKey and a reload's revoked check use it,
	// so a keyed request hashes its key once.
	digest [sha256.Size]byte
	// token: the credential is a verified JWT of the issuer iss, accepted
	// on trust; a reload whose issuers no longer trust it ends the
	// request, as a removed key's (keyRequests).
	token    bool
	iss      string
	trust    auth.Trust
	tenant   string
	weight   float64
	class    admission.Class
	fallback bool // may be served by a fallback model
	// keyRule is the key's own rate limits, from a token's limit claims;
	// nil: the configured ones.
	keyRule *ratelimit.Rule
	// preempt, when set, marks spare-capacity work (a queued job): it is
	// admitted only into a free slot and preempted by calling this when
	// live traffic needs the slot.
	preempt func()
}

// tokenVerifier checks a bearer JWT (internal/auth) and says whom it
// names; a refusal is an *auth.Failure.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (auth.Identity, error)
}

// tenants resolves API keys and bearer JWTs to their identity, and
// requests to their client address.
type tenants struct {
	require bool
	// byKey holds the listed keys by their SHA-256 digest, as the admin
	// token is compared: a lookup compares digests, never the presented
	// key with a listed one, so its time tells nothing of their bytes (Go
	// compares string keys of a small map directly, length and first and
	// last bytes first, for keys over 64 bytes).
	byKey map[[sha256.Size]byte]config.Tenant
	// named holds the tenant of every listed key (orphaned).
	named map[string]struct{}
	// shared is every issuer's auth.jwt shared_tenants (and the defaults
	// written under auth.jwt): tenants some token may name as is.
	shared []string
	tokens tokenVerifier // nil: JWTs off
	// spaces are the token tenants' namespaces, one per issuer (nil with
	// JWTs off): what a reload removing an issuer loses (lostTenants).
	spaces []tokenSpace
	realIP realIP
}

func newTenants(a config.Auth, tokens tokenVerifier) *tenants {
	t := &tenants{require: a.RequireKey, byKey: make(map[[sha256.Size]byte]config.Tenant, len(a.Keys)), tokens: tokens,
		named: make(map[string]struct{}, len(a.Keys)), shared: sharedTenants(a.JWT),
		realIP: newRealIP(a.TrustedProxies, a.ForwardedHeader)}
	if tokens != nil {
		t.spaces = tokenSpaces(a.JWT)
	}
	for _, k := range a.Keys {
		d := sha256.Sum256([]byte(k.Key))
		if k.Tenant == "" {
			k.Tenant = keyTenant(d) // named once here, not per request
		}
		t.byKey[d] = k
		t.named[k.Tenant] = struct{}{}
	}
	return t
}

// sharedTenants is the union of the shared_tenants patterns of every
// issuer a token may come from (orphaned): a tenant any of them shares is
// not lost with its last key. With auth.jwt.issuers, the entries' own
// lists, as their verifiers read them: auth.jwt's is only the default of
// an entry that leaves its own unset (config inheritJWT), and counted
// when every entry wrote its own, it kept a tenant no token can name.
func sharedTenants(j config.JWT) []string {
	if len(j.Issuers) == 0 {
		return slices.Clone(j.SharedTenants)
	}
	var shared []string
	for _, e := range j.Issuers {
		shared = append(shared, e.SharedTenants...)
	}
	return shared
}

func classOf(name string) admission.Class {
	if name == "batch" {
		return admission.Batch
	}
	return admission.Interactive
}

// keyRefusal is a refused API key (or a missing or doubled credential):
// the answer (apiError finds it through Unwrap) and the RFC 6750 challenge
// refuseAuth puts in WWW-Authenticate, which RFC 9110 requires on a 401.
type keyRefusal struct {
	answer    *openai.Error
	challenge string
}

func (k *keyRefusal) Error() string { return k.answer.Error() }
func (k *keyRefusal) Unwrap() error { return k.answer }

// The challenges: none of RFC 6750's error codes for a request with no
// credential (it may not know one is needed), invalid_token for one that
// is not accepted, invalid_request for two.
const (
	challengeMissing = `Bearer`
	challengeInvalid = `Bearer error="invalid_token"`
	challengeTwo     = `Bearer error="invalid_request"`
)

// errInvalidKey answers a request whose key is refused, or that has none
// where one is required (presented says which).
func errInvalidKey(presented bool) *keyRefusal {
	c := challengeMissing
	if presented {
		c = challengeInvalid
	}
	return &keyRefusal{challenge: c, answer: &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest,
		Code: "invalid_api_key", Message: "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'."}}
}

// errTwoCredentials answers a request with more than one Authorization
// header once credentials are checked (credential).
func errTwoCredentials() *keyRefusal {
	return &keyRefusal{challenge: challengeTwo, answer: &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest,
		Code: "invalid_api_key", Message: "The request has more than one Authorization header. Send the API key once, as 'Authorization: Bearer <key>'."}}
}

// errInvalidToken answers every refused JWT alike (apiError).
var errInvalidToken = &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest, Code: "invalid_api_key",
	Message: "Invalid bearer token."}

// identify reads the bearer credential and the priority header. With JWTs
// on, a bearer with two dots is a token (auth.LooksLikeJWT): verified, it
// is the tenant its claims name; refused, an *auth.Failure. With keys
// configured, a listed key is its tenant. Any other credential presented
// is refused once keys or JWTs are configured; no credential is refused
// with require_key or else anonymous. Anonymous callers, and every caller
// in open mode (neither keys nor JWTs: a presented key is not checked, so
// it cannot name anyone), are "ip:<client address>", so one flood is one
// tenant however many keys it invents. The error is an *openai.Error or
// an *auth.Failure (apiError answers both).
func (t *tenants) identify(r *http.Request, ip string) (identity, error) {
	return t.identifyFrom(r.Context(), credential(r.Header["Authorization"]), headerGet(r.Header, headerPriority), &client{key: ip})
}

// identifyFrom is identify for the client c (tenants.client), whose
// open-mode tenant may be made already, from the request's Authorization
// and X-Sluice-Priority values (requestHeaders).
func (t *tenants) identifyFrom(ctx context.Context, authz, priority string, c *client) (identity, error) {
	if t.anonymous(authz, priority, c) {
		// No credential, none required, no priority asked: the anonymous
		// caller the default below makes, its tenant named per connection
		// already. Every cache hit in open mode is this one; done here in
		// a few code lines, not across the whole function's (Step 4i).
		var id identity
		setAnonymous(&id, c)
		return id, nil
	}
	key := bearer(authz)
	id := identity{weight: config.DefaultTenantWeight, class: admission.Interactive, fallback: true}
	maxClass := admission.Interactive
	var k config.Tenant
	var digest [sha256.Size]byte
	listed := false
	if key != "" && len(t.byKey) > 0 {
		digest = sha256.Sum256([]byte(key))
		k, listed = t.byKey[digest]
	}
	switch {
	case t.tokens != nil && auth.LooksLikeJWT(key):
		claims, err := t.tokens.Verify(ctx, key)
		if err != nil {
			return id, err
		}
		id.tenant, id.keyRule, id.fallback = claims.Tenant, claims.Limits, !claims.NoFallback
		id.key = claims.Key // "jwt:<sub>", or "jwt:<issuer>:<sub>" with several issuers
		id.token, id.iss, id.trust = true, claims.Issuer, claims.Trust
		if claims.Weight > 0 {
			id.weight = claims.Weight
		}
		id.class, maxClass = classOf(claims.Priority), classOf(claims.MaxPriority)
	case listed && key != "":
		id.key, id.tenant, id.listed, id.digest = key, k.Tenant, true, digest // newTenants named a key without a tenant
		if k.Weight > 0 {
			id.weight = k.Weight
		}
		id.class = classOf(k.Priority)
		maxClass = classOf(k.MaxPriority)
		id.fallback = !k.NoFallback
	case (len(t.byKey) > 0 || t.tokens != nil || t.require) && authz == twoCredentials:
		return id, errTwoCredentials()
	case (len(t.byKey) > 0 || t.tokens != nil) && (authz != "" || t.require):
		return id, errInvalidKey(authz != "")
	default:
		id.tenant = c.openTenant
		if id.tenant == "" {
			id.tenant = "ip:" + c.key
		}
	}
	// A request may lower its own priority, or raise it as far as its key
	// allows (no header: nothing asked, and no call to parse it).
	if priority != "" {
		class, asked, perr := parsePriority(priority)
		if perr != nil {
			return id, perr
		}
		if asked {
			id.class = max(class, maxClass)
		}
	}
	if id.class < maxClass {
		id.class = maxClass
	}
	return id, nil
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// keyTenant names the tenant of a listed key configured without one, from
// the key's digest d: not the secret, in logs and metrics (newTenants).
func keyTenant(d [sha256.Size]byte) string {
	return "key:" + hex.EncodeToString(d[:6])
}

// refuseAuth counts a refused credential in sluice_auth_failures_total by
// reason and, for a token, adds RFC 6750's challenge (no detail). It
// returns the cause for the log: the token's refusal reason; nil for a
// refused API key (nothing to add) or an error of another kind.
func (g *Gateway) refuseAuth(w http.ResponseWriter, err error) error {
	var refused *auth.Failure
	var key *keyRefusal
	switch {
	case errors.As(err, &refused):
		g.authFailures.WithLabelValues(string(refused.Reason)).Inc()
		if refused.Reason != auth.ReasonKeysUnavailable { // a 503 (apiError): no challenge
			w.Header().Set("WWW-Authenticate", challengeInvalid)
		}
		return refused
	case errors.As(err, &key):
		g.authFailures.WithLabelValues("invalid_api_key").Inc()
		w.Header().Set("WWW-Authenticate", key.challenge)
	}
	return nil
}

// keySetFetchedDesc is labelled by the issuer's name. The single form's
// issuer has none: its label value is "", which Prometheus stores as the
// unlabelled series the metric had before it had a label, so alerts and
// history written for one issuer are unchanged.
var keySetFetchedDesc = prometheus.NewDesc("sluice_auth_jwks_last_fetch_timestamp_seconds",
	"When the issuer's JWKS (auth.jwt.jwks_url) was last fetched successfully, Unix seconds; 0 before the first "+
		"success. One series per issuer with a jwks_url, issuer its auth.jwt.issuers name (\"\" with the single auth.jwt form). "+
		"Absent when no jwks_url is configured. Alert on time() minus this well past jwks_refresh.", []string{"issuer"}, nil)

// keySetCollector reports the freshness of the running runtime's JWKS, read
// at scrape time.
type keySetCollector struct{ g *Gateway }

func (c keySetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- keySetFetchedDesc }

func (c keySetCollector) Collect(ch chan<- prometheus.Metric) {
	v, _ := c.g.rt.Load().tenants.tokens.(*auth.Issuers)
	if v == nil {
		return
	}
	for _, f := range v.KeySetsFetched() {
		secs := 0.0
		if !f.Fetched.IsZero() {
			secs = float64(f.Fetched.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(keySetFetchedDesc, prometheus.GaugeValue, secs, f.Name)
	}
}

// anonymous reports whether a request with these credential and priority
// headers, from c, is the anonymous caller of open mode whose tenant is
// named per connection already: identifyFrom's first case, which every
// cache hit in open mode takes.
func (t *tenants) anonymous(authz, priority string, c *client) bool {
	return authz == "" && priority == "" && !t.require && c.openTenant != ""
}

// setAnonymous makes the zero identity id the anonymous caller from c
// (anonymous), field by field: the identify stage sets its exchange's in
// place, where a whole identity returned and copied in (~190 bytes with
// pointers, so under write barriers) spanned more of a hit's code lines
// (docs/BENCHMARKS.md §9 Step 5, branch hitpath).
func setAnonymous(id *identity, c *client) {
	id.tenant, id.weight, id.class, id.fallback = c.openTenant, config.DefaultTenantWeight, admission.Interactive, true
}
