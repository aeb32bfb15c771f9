package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// JWT is auth.jwt: bearer JSON Web Tokens verified locally, besides API
// keys, with no call to the issuer per request and no session. It is on
// when any key source is set: jwks_url, public_keys or hmac_secret.
//
// A bearer with exactly two dots is read as a JWT, anything else as an API
// key (API keys with two dots are refused by validation while JWTs are
// on). A token that fails any check is refused with one generic 401; the
// reason goes to the log and sluice_auth_failures_total{reason}.
type JWT struct {
	// JWTIssuer is the single-issuer form: auth.jwt.issuer, jwks_url and
	// the rest written directly under auth.jwt. With Issuers, its key
	// sources, issuer and audience stay unset and its other keys are the
	// defaults of every entry.
	JWTIssuer `yaml:",inline"`
	// MaxTokenBytes bounds a token; a larger one is refused unparsed,
	// before its issuer is read. Default 8KiB, at most 64KiB.
	MaxTokenBytes ByteSize `yaml:"max_token_bytes"`
	// Issuers is the list form: several identity providers, a token
	// verified by the one its iss names (with that issuer's keys only).
	// With two or more, a token's tenant is "jwt:<name>:<claim>" and its
	// per-key name "jwt:<name>:<subject>", so two providers' sub=alice are
	// two tenants; with one, "jwt:<claim>" as in the single form.
	Issuers []NamedJWTIssuer `yaml:"issuers"`
}

// NamedJWTIssuer is one entry of auth.jwt.issuers. A key it leaves unset
// takes auth.jwt's value (its default when auth.jwt leaves it unset too).
type NamedJWTIssuer struct {
	// Name is the issuer's short name in tenant names
	// ("jwt:<name>:<claim>"), logs and /readyz: letters, digits, '.', '_'
	// and '-', at most 32 (never ':', which ends it in a tenant name).
	// Required with two or more entries.
	Name      string `yaml:"name"`
	JWTIssuer `yaml:",inline"`
}

// JWTIssuer is what one issuer's tokens are verified with: the single
// form's keys under auth.jwt, or one auth.jwt.issuers entry.
type JWTIssuer struct {
	// JWKSURL is the issuer's JSON Web Key Set, fetched at start and every
	// JWKSRefresh, and again (at most once per JWKSMinRefresh) when a
	// token names a kid it does not hold. https:// only (http:// to a
	// loopback address for tests); redirects are not followed.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is the periodic re-fetch. Default 1h.
	JWKSRefresh Duration `yaml:"jwks_refresh"`
	// JWKSMinRefresh bounds re-fetches caused by unknown kids, so a flood
	// of made-up kids costs the issuer one fetch per interval. Default 1m.
	JWKSMinRefresh Duration `yaml:"jwks_min_refresh"`
	// JWKSTimeout bounds one fetch. Default 5s.
	JWKSTimeout Duration `yaml:"jwks_timeout"`
	// JWKSMaxBytes bounds the key set's body. Default 256KiB.
	JWKSMaxBytes ByteSize `yaml:"jwks_max_bytes"`
	// PublicKeys are static verification keys (PEM: PUBLIC KEY, RSA PUBLIC
	// KEY or CERTIFICATE), read at start and on every reload.
	PublicKeys []JWTKey `yaml:"public_keys"`
	// HMACSecret verifies HS256/384/512 tokens (at least 32 bytes; ${VAR}
	// expanded). HMAC is never verified with a public key.
	HMACSecret string `yaml:"hmac_secret"`
	// Algorithms is the allow-list of the tokens' "alg". Default: the
	// asymmetric ones (RS*, PS*, ES*, EdDSA); HS* only with hmac_secret;
	// "none" never.
	Algorithms []string `yaml:"algorithms"`
	// Issuer and Audience must match the token's iss and (one of its) aud.
	// Both required: a token minted for another service must not pass.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s,
	// at most 5m.
	Leeway Duration `yaml:"leeway"`
	// Claims names the claims that carry what an API key's entry carries.
	Claims JWTClaims `yaml:"claims"`
	// SharedTenants are path.Match patterns of tenant claim values that
	// name a tenant as is, the same one auth.keys[].tenant of that name is
	// (its files, batches, jobs, stored responses, cached answers, rate
	// limit buckets and fair share). Any other claim value is the tenant
	// TokenTenantPrefix+value, a namespace of its own: a token can never
	// reach an API key's tenant by its claim alone. Default none; "*" is
	// the single namespace of releases before 2026-12-06.
	SharedTenants []string `yaml:"shared_tenants"`
}

// TokenTenantPrefix starts the tenant of a token whose tenant claim is not
// in auth.jwt.shared_tenants ("jwt:acme" for the claim "acme"). With "ip:"
// (anonymous callers) and "key:" (keys naming no tenant) it is reserved:
// no auth.keys[].tenant may start with one of them.
const TokenTenantPrefix = "jwt:"

// ReservedTenantPrefixes are the gateway's own tenant namespaces.
var ReservedTenantPrefixes = []string{"ip:", "key:", TokenTenantPrefix}

// ReservedTenant reports a tenant name in one of the gateway's own
// namespaces.
func ReservedTenant(name string) bool {
	for _, p := range ReservedTenantPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// SharedTenant reports whether a token whose tenant claim is claimed is
// that tenant as is (patterns: auth.jwt.shared_tenants), rather than
// TokenTenantPrefix+claimed.
func SharedTenant(patterns []string, claimed string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, claimed); ok {
			return true
		}
	}
	return false
}

// PolicyTenant is the name rate_limits.tenants and cache rules look a
// tenant up by when its own name is not listed: the claim of a token's
// namespaced tenant, so a rule written for "acme" applies to the token
// tenant "jwt:acme" too (its buckets and data stay its own). "" otherwise.
func PolicyTenant(tenant string) string {
	if strings.HasPrefix(tenant, TokenTenantPrefix) {
		return tenant[len(TokenTenantPrefix):]
	}
	return ""
}

// JWTKey is one static public key.
type JWTKey struct {
	// File is the PEM file.
	File string `yaml:"file"`
	// KID, when set, is the kid tokens signed with this key name; a
	// token with no kid is tried against every static key.
	KID string `yaml:"kid"`
}

// JWTClaims names the claims a verified token's identity is read from.
// An absent claim takes the default an API key entry has; a present claim
// of the wrong kind refuses the token (the issuer is misconfigured).
type JWTClaims struct {
	// Tenant: string, the tenant (fairness, per-tenant limits and
	// rate_limits.tenants, cache rules, what it owns), as
	// "jwt:<claim>" (TokenTenantPrefix) unless shared_tenants lists it.
	// Default "sub". Required in the token.
	Tenant string `yaml:"tenant"`
	// Subject: string, who the token is for; per-key rate limits count it
	// as the key "jwt:<subject>". Default "sub".
	Subject string `yaml:"subject"`
	// Weight: number in (0, 1e6], the tenant's share. Default claim
	// "sluice_weight"; absent: 1.
	Weight string `yaml:"weight"`
	// Priority and MaxPriority: "interactive" or "batch", as
	// auth.keys[].priority and max_priority. Default claims
	// "sluice_priority" and "sluice_max_priority".
	Priority    string `yaml:"priority"`
	MaxPriority string `yaml:"max_priority"`
	// NoFallback: boolean, as auth.keys[].no_fallback. Default claim
	// "sluice_no_fallback".
	NoFallback string `yaml:"no_fallback"`
	// Requests and TokensPerMinute: the subject's own rate limits (nginx
	// limit_req syntax, e.g. "10r/s burst=20 nodelay"; an integer),
	// replacing rate_limits.per_key for it as rate_limits.keys does for
	// an API key. Default claims "sluice_requests" and
	// "sluice_tokens_per_minute".
	Requests        string `yaml:"requests"`
	TokensPerMinute string `yaml:"tokens_per_minute"`
}

// Enabled reports whether JWTs are verified: some key source is set, or
// some issuer is listed.
func (j JWT) Enabled() bool { return len(j.Issuers) > 0 || j.JWTIssuer.hasKeys() }

func (j JWTIssuer) hasKeys() bool {
	return j.JWKSURL != "" || len(j.PublicKeys) > 0 || j.HMACSecret != ""
}

// Namespaced reports whether tokens' tenants name their issuer
// ("jwt:<name>:<claim>"): two or more issuers.
func (j JWT) Namespaced() bool { return len(j.Issuers) > 1 }

// IssuerConfigs is one single-issuer auth.jwt per issuer, in order: the
// single form as is (name ""), or each auth.jwt.issuers entry with
// max_token_bytes. Nil when JWTs are off.
func (j JWT) IssuerConfigs() []NamedJWT {
	if !j.Enabled() {
		return nil
	}
	if len(j.Issuers) == 0 {
		return []NamedJWT{{JWT: j}}
	}
	out := make([]NamedJWT, len(j.Issuers))
	for i, e := range j.Issuers {
		out[i] = NamedJWT{Name: e.Name, JWT: JWT{JWTIssuer: e.JWTIssuer, MaxTokenBytes: j.MaxTokenBytes}}
	}
	return out
}

// NamedJWT is one issuer's config (IssuerConfigs).
type NamedJWT struct {
	Name string // auth.jwt.issuers[].name; "" for the single form
	JWT  JWT
}

// TokenTenantPrefixFor is the prefix of the tenants (and per-key names)
// of the issuer called name: TokenTenantPrefix with one issuer,
// "jwt:<name>:" with several.
func (j JWT) TokenTenantPrefixFor(name string) string {
	if !j.Namespaced() {
		return TokenTenantPrefix
	}
	return TokenTenantPrefix + name + ":"
}

// JWT algorithm names, by family.
var (
	jwtAsymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	jwtHMAC       = []string{"HS256", "HS384", "HS512"}
)

// JWTAlgorithms is the allow-list in force: Algorithms, or the asymmetric
// algorithms when unset.
func (j JWTIssuer) JWTAlgorithms() []string {
	if len(j.Algorithms) == 0 {
		return slices.Clone(jwtAsymmetric)
	}
	return j.Algorithms
}

// Limits of auth.jwt.
const (
	MinHMACSecretBytes = 32
	maxJWTLeeway       = 5 * time.Minute
	maxJWTTokenBytes   = 64 << 10
)

func defaultJWT() JWT {
	return JWT{MaxTokenBytes: 8 << 10, JWTIssuer: JWTIssuer{
		JWKSRefresh: Duration(time.Hour), JWKSMinRefresh: Duration(time.Minute), JWKSTimeout: Duration(5 * time.Second),
		JWKSMaxBytes: 256 << 10, Leeway: Duration(30 * time.Second),
		Claims: JWTClaims{Tenant: "sub", Subject: "sub", Weight: "sluice_weight", Priority: "sluice_priority",
			MaxPriority: "sluice_max_priority", NoFallback: "sluice_no_fallback",
			Requests: "sluice_requests", TokensPerMinute: "sluice_tokens_per_minute"},
	}}
}

func (c *Config) validateJWT(bad badFunc) {
	j := c.Auth.JWT
	if !j.Enabled() {
		return
	}
	const p = "auth.jwt."
	if len(j.Issuers) == 0 {
		validateJWTIssuer(j.JWTIssuer, p, bad)
	} else {
		c.validateJWTIssuers(bad)
	}
	if j.MaxTokenBytes < 256 || j.MaxTokenBytes > maxJWTTokenBytes {
		bad(p+"max_token_bytes", "must be between 256 and 64KiB, got %d bytes", int64(j.MaxTokenBytes))
	}
	for i, k := range c.Auth.Keys {
		if strings.Count(k.Key, ".") == 2 {
			bad(fmt.Sprintf("auth.keys[%d].key", i), "must not contain exactly two dots while auth.jwt is on: such a bearer is read as a JWT")
		}
	}
}

// validateJWTIssuer checks one issuer's keys, written under p
// ("auth.jwt." or "auth.jwt.issuers[1].").
func validateJWTIssuer(j JWTIssuer, p string, bad badFunc) {
	if !j.hasKeys() {
		bad(p+"jwks_url", "needs a key source: jwks_url, public_keys or hmac_secret")
	}
	if j.JWKSURL != "" {
		if problem := jwksURLProblem(j.JWKSURL); problem != "" {
			bad(p+"jwks_url", "%s, got %q", problem, j.JWKSURL)
		}
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"jwks_refresh", j.JWKSRefresh}, {"jwks_min_refresh", j.JWKSMinRefresh}, {"jwks_timeout", j.JWKSTimeout}} {
		if d.v <= 0 {
			bad(p+d.key, "must be a positive duration, got %s", d.v.D())
		}
	}
	if j.JWKSMaxBytes < 1<<10 || j.JWKSMaxBytes > 16<<20 {
		bad(p+"jwks_max_bytes", "must be between 1KiB and 16MiB, got %d bytes", int64(j.JWKSMaxBytes))
	}
	for i, k := range j.PublicKeys {
		if k.File == "" {
			bad(fmt.Sprintf("%spublic_keys[%d].file", p, i), "must name a PEM file")
		}
	}
	if j.HMACSecret != "" && len(j.HMACSecret) < MinHMACSecretBytes {
		bad(p+"hmac_secret", "must be at least %d bytes (RFC 7518 3.2), got %d", MinHMACSecretBytes, len(j.HMACSecret))
	}
	validateJWTAlgorithms(j, p, bad)
	if j.Issuer == "" {
		bad(p+"issuer", "must name the tokens' issuer (their iss claim)")
	}
	if j.Audience == "" {
		bad(p+"audience", "must name this gateway's audience (the tokens' aud claim): tokens minted for other services must not pass")
	}
	if j.Leeway < 0 || j.Leeway.D() > maxJWTLeeway {
		bad(p+"leeway", "must be between 0 and %s, got %s", maxJWTLeeway, j.Leeway.D())
	}
	if j.Claims.Tenant == "" {
		bad(p+"claims.tenant", "must name the claim that holds the tenant (default sub)")
	}
	for i, pat := range j.SharedTenants {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			bad(fmt.Sprintf("%sshared_tenants[%d]", p, i), "want a tenant name or a path.Match pattern, got %q", pat)
		}
	}
}

func validateJWTAlgorithms(j JWTIssuer, p string, bad badFunc) {
	key := p + "algorithms"
	hmacListed, asymListed := false, false
	for i, a := range j.Algorithms {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case strings.EqualFold(a, "none"):
			bad(k, "none is never allowed (an unsigned token proves nothing)")
		case slices.Contains(jwtHMAC, a):
			hmacListed = true
			if j.HMACSecret == "" {
				bad(k, "%s needs %shmac_secret (HMAC is never verified with a public key)", a, p)
			}
		case slices.Contains(jwtAsymmetric, a):
			asymListed = true
		default:
			bad(k, "must be one of %s, got %q", strings.Join(append(slices.Clone(jwtAsymmetric), jwtHMAC...), ", "), a)
		}
	}
	if len(j.Algorithms) == 0 {
		asymListed = true // the default
	}
	if j.HMACSecret != "" && !hmacListed {
		bad(key, "must list HS256, HS384 or HS512 when %shmac_secret is set", p)
	}
	if (j.JWKSURL != "" || len(j.PublicKeys) > 0) && !asymListed {
		bad(key, "lists no asymmetric algorithm (RS*, PS*, ES*, EdDSA), so jwks_url and public_keys verify nothing")
	}
}

// jwksURLProblem says what is wrong with a JWKS URL: https only, except
// http to a loopback address (a key set fetched in clear text could be
// replaced on the way).
func jwksURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "must be an https:// URL"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return ""
		}
		return "must be https:// (http:// only to a loopback address)"
	}
	return "must be an https:// URL"
}
