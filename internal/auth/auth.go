// Package auth verifies bearer JSON Web Tokens locally: no call to the
// issuer per request and no session, so any number of gateway replicas
// verify the same tokens alike. Keys come from an issuer's JWKS URL
// (cached; jwks.go), static PEM files, or an HMAC secret. The checks, in
// order: a size bound (an oversized token is not parsed), the header
// (token.go: three base64url segments, "alg" on the allow-list, no
// "crit"), the signature with a key of the algorithm's own kind (keys.go:
// HMAC only with the secret, never a public key), then exp, nbf and iat
// with leeway on the injected clock, iss and aud; last the claims that
// carry the tenant, weight, priority and limits (claims.go).
//
// Every refusal is a *Failure whose Reason is for logs and metrics only;
// the client gets one generic answer whatever went wrong.
package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// Reason is why a token was refused: a label of
// sluice_auth_failures_total and a log field, never shown to the client.
type Reason string

// The reasons a token is refused.
const (
	ReasonOversized       Reason = "oversized"        // longer than max_token_bytes; not parsed
	ReasonMalformed       Reason = "malformed"        // not a JWS compact token with a header understood
	ReasonAlgorithm       Reason = "algorithm"        // alg not allowed, or no key of its kind (confusion)
	ReasonUnknownKID      Reason = "unknown_kid"      // no key with the token's kid, after a refresh if one was due
	ReasonKeysUnavailable Reason = "keys_unavailable" // the key set was never fetched
	ReasonSignature       Reason = "signature"        // the signature does not verify
	ReasonExpired         Reason = "expired"          // exp passed (beyond the leeway)
	ReasonNotYetValid     Reason = "not_yet_valid"    // nbf or iat in the future (beyond the leeway)
	ReasonIssuer          Reason = "issuer"           // iss is not the configured issuer
	ReasonAudience        Reason = "audience"         // aud does not name this gateway
	ReasonClaims          Reason = "claims"           // exp missing, or a mapped claim missing or of the wrong kind
)

// Failure is a refused token.
type Failure struct {
	Reason Reason
	Err    error // the detail, for the log
	// RetryAfter, for ReasonKeysUnavailable only, is when the key set is
	// asked for again at the latest (jwks_min_refresh): the token was not
	// judged, so its bearer is told to come back, not that it is wrong.
	RetryAfter time.Duration
}

func (f *Failure) Error() string {
	if f.Err == nil {
		return "token refused: " + string(f.Reason)
	}
	return "token refused: " + string(f.Reason) + ": " + f.Err.Error()
}

func (f *Failure) Unwrap() error { return f.Err }

func fail(r Reason, err error) *Failure { return &Failure{Reason: r, Err: err} }

// Identity is what a verified token says about its bearer, in the terms
// of an API key's entry (config.Tenant).
type Identity struct {
	// Subject is who the token is for ("" when the subject claim is
	// absent).
	Subject string
	// Key is the name per-key rate limits count the subject as:
	// "jwt:<subject>", or "jwt:<issuer name>:<subject>" with several
	// issuers; "" without a subject.
	Key string
	// Tenant is "jwt:<claim>" (config.TokenTenantPrefix), or
	// "jwt:<issuer name>:<claim>" with several issuers: a namespace no API
	// key's tenant, no anonymous caller and no other issuer's token is in,
	// unless the claim is one of the issuer's shared_tenants: then the
	// claim as is, the tenant of that name in auth.keys.
	Tenant string
	// Weight is the tenant's share; 0: unset (1).
	Weight float64
	// Priority and MaxPriority: "interactive", "batch", or "" (unset).
	Priority, MaxPriority string
	NoFallback            bool
	// Limits, when the token carries limit claims, replace the per-key
	// limits for Subject (a zero field keeps the configured one).
	Limits *ratelimit.Rule
	// Issuer is the token's iss, and Trust what it was accepted on
	// (Issuers.Trusts tells whether a reloaded config still trusts it).
	Issuer string
	Trust  Trust
}

// Verifier checks tokens against one auth.jwt config. It is built with
// each runtime (static keys re-read on reload); the JWKS it reads may be
// shared across runtimes and is closed by its owner, not here.
type Verifier struct {
	algs     []string
	secret   []byte      // nil: no HMAC
	static   []staticKey // from PEM files
	jwks     *JWKS       // nil: no key set URL
	maxBytes int
	claims   config.JWTClaims
	shared   []string // auth.jwt.shared_tenants
	parser   *jwt.Parser
	// prefix starts the tenants and per-key names of this issuer's
	// tokens: config.TokenTenantPrefix, or "jwt:<name>:" (NewIssuers).
	prefix string
	// iss is the issuer's iss; claimsDigest and the source that verified
	// a token are what it was accepted on (Identity.Trust), sources every
	// source the issuer has (Issuers.Trusts).
	iss          string
	claimsDigest [sha256.Size]byte
	sources      []keySource
	hmacSrc      keySource // of secret
	jwksSrc      keySource // of jwks
	// jwksKey is the config key of this issuer's jwks_url,
	// "auth.jwt.jwks_url" or "auth.jwt.issuers[i].jwks_url" (NewIssuers),
	// for the log's detail of a token refused for want of keys.
	jwksKey string
}

// NewVerifier builds the verifier c describes, reading the static key
// files. jwks is the key set source for c.JWKSURL (nil when unset); now is
// the clock exp, nbf and iat are checked against.
func NewVerifier(c config.JWT, jwks *JWKS, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	algs := c.JWTAlgorithms()
	if slices.ContainsFunc(algs, func(a string) bool { return a == "" || a == "none" || (isHMAC(a) && c.HMACSecret == "") }) {
		return nil, errors.New("auth.jwt.algorithms: none, or HMAC without hmac_secret, is never allowed")
	}
	if (c.JWKSURL != "") != (jwks != nil) {
		return nil, errors.New("auth.jwt.jwks_url: the key set source does not match the config")
	}
	static, err := loadStaticKeys(c.PublicKeys)
	if err != nil {
		return nil, err
	}
	v := &Verifier{algs: algs, static: static, jwks: jwks, maxBytes: int(c.MaxTokenBytes), claims: c.Claims,
		shared: c.SharedTenants, prefix: config.TokenTenantPrefix, jwksKey: "auth.jwt.jwks_url",
		iss: c.Issuer, claimsDigest: claimsDigest(c), sources: sourcesOf(c, static), jwksSrc: jwksSource(c.JWKSURL)}
	if c.HMACSecret != "" {
		v.secret = []byte(c.HMACSecret)
		v.hmacSrc = hmacSource(c.HMACSecret)
	}
	v.parser = jwt.NewParser(append(payloadDecoding(), // as peekIssuer reads the payload
		jwt.WithValidMethods(algs),
		jwt.WithLeeway(c.Leeway.D()),
		jwt.WithTimeFunc(now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(c.Issuer),
		jwt.WithAudience(c.Audience),
	)...)
	return v, nil
}

// KeySetState is the issuer's key set as /readyz tells it.
type KeySetState string

// The states of a key set.
const (
	KeySetOK          KeySetState = "ok"          // keys held, the last fetch succeeded
	KeySetDegraded    KeySetState = "degraded"    // keys held, the last fetch failed: they are still used
	KeySetUnavailable KeySetState = "unavailable" // never fetched: tokens are answered 503, not judged
)

// KeySet is the state of the issuer's key set; ok is false when no
// jwks_url is configured. holds reports a key set made at the gateway's
// start that was never fetched: the replica is not ready until it is (a
// key set a reload made does not hold readiness, so a reload every replica
// takes at once cannot take them all out together).
func (v *Verifier) KeySet() (state KeySetState, holds, ok bool) {
	if v.jwks == nil {
		return "", false, false
	}
	switch {
	case v.jwks.current() == nil:
		return KeySetUnavailable, v.jwks.startup.Load(), true
	case v.jwks.failing.Load():
		return KeySetDegraded, false, true
	}
	return KeySetOK, false, true
}

// KeySetFetched is when the issuer's key set was last fetched (zero: never);
// ok is false when no jwks_url is configured.
func (v *Verifier) KeySetFetched() (t time.Time, ok bool) {
	if v.jwks == nil {
		return time.Time{}, false
	}
	return v.jwks.Fetched(), true
}

// Verify checks token and returns the identity its claims carry, or a
// *Failure. ctx bounds the wait for a key set fetch an unknown kid causes.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if len(token) > v.maxBytes {
		return Identity{}, fail(ReasonOversized, fmt.Errorf("%d bytes, bound %d", len(token), v.maxBytes))
	}
	h, err := peekHeader(token)
	if err != nil {
		return Identity{}, fail(ReasonMalformed, err)
	}
	if !slices.Contains(v.algs, h.Alg) {
		return Identity{}, fail(ReasonAlgorithm, fmt.Errorf("alg %q not allowed", truncate(h.Alg, 16)))
	}
	claims, by, err := v.parse(ctx, token, h)
	if err != nil && !h.HasKid && v.jwks != nil && refetchable(err) && v.jwks.refreshUnknown(ctx) {
		// A token that names no key is checked against every key held,
		// so a key set never fetched, or one the issuer has rotated since,
		// shows as no key or a bad signature: fetch once (rate-bounded as
		// for an unknown kid) and check again.
		claims, by, err = v.parse(ctx, token, h)
	}
	if err != nil {
		return Identity{}, err
	}
	id, err := v.identity(claims)
	if err != nil {
		return Identity{}, err
	}
	// The parser checked iss against v.iss; by is the key that verified
	// the signature, h.Alg the allowed alg it verified with.
	id.Issuer, id.Trust = v.iss, Trust{claims: v.claimsDigest, source: by.source, setKey: by.setKey, alg: h.Alg}
	return id, nil
}

// verifiedBy is the key that verified a token: its source (Trust), and
// for a key of the key set the key itself, whose material a reload that
// drops the set compares with the static keys kept (Issuers.Trusts).
type verifiedBy struct {
	source keySource
	setKey crypto.PublicKey
}

// parse checks token's signature and registered claims, and tells which
// key verified it; the error is a *Failure.
func (v *Verifier) parse(ctx context.Context, token string, h header) (jwt.MapClaims, verifiedBy, error) {
	claims := jwt.MapClaims{}
	var by verifiedBy
	keyFor := func(t *jwt.Token) (any, error) {
		// The library reads alg from its own decoding of the header: a
		// header naming it twice ("alg" and a case variant, which the
		// peek's struct decoding also takes) could be verified under one
		// alg and held (Trust) under the other, so a reload dropping the
		// verified one would not end its requests. One token, one alg.
		if t.Method == nil || t.Method.Alg() != h.Alg {
			return nil, fail(ReasonMalformed, errors.New("header alg read two ways"))
		}
		k, b, err := v.key(ctx, h, t, token)
		by = b
		return k, err
	}
	if _, err := v.parser.ParseWithClaims(token, claims, keyFor); err != nil {
		return nil, verifiedBy{}, classify(err)
	}
	return claims, by, nil
}

// refetchable reports a refusal of a token without kid that a fresh key
// set may cure: no key set held yet, or no held key verifies it.
func refetchable(err error) bool {
	var f *Failure
	return errors.As(err, &f) && (f.Reason == ReasonKeysUnavailable || f.Reason == ReasonSignature)
}

// key finds the key for a token with header h, and which it is (Trust):
// the HMAC secret for HS*, never anything else; for the others, the
// static keys and the key set's, only those of the algorithm's own kind.
// tok is the parsed token and raw its text, for a token without kid that
// several keys could verify (which, is found here).
func (v *Verifier) key(ctx context.Context, h header, tok *jwt.Token, raw string) (any, verifiedBy, error) {
	if isHMAC(h.Alg) {
		if v.secret == nil {
			return nil, verifiedBy{}, fail(ReasonAlgorithm, errors.New("HMAC without a configured secret"))
		}
		return v.secret, verifiedBy{source: v.hmacSrc}, nil
	}
	if h.HasKid {
		for _, k := range v.static {
			if k.kid == h.Kid {
				key, err := v.fitting(h.Alg, k.key)
				return key, verifiedBy{source: k.src}, err
			}
		}
		if v.jwks == nil {
			return nil, verifiedBy{}, fail(ReasonUnknownKID, fmt.Errorf("kid %q", truncate(h.Kid, 64)))
		}
		key, err := v.fromKeySet(ctx, h)
		return key, verifiedBy{source: v.jwksSrc, setKey: key}, err
	}
	// No kid: every key of the algorithm's kind is tried.
	var keys []jwt.VerificationKey
	var from []verifiedBy
	for _, k := range v.static {
		if fits(h.Alg, k.key) {
			keys, from = append(keys, k.key), append(from, verifiedBy{source: k.src})
		}
	}
	if v.jwks != nil {
		if ks := v.jwks.current(); ks != nil {
			// keyfunc skips the JWKs whose own alg or use forbids it.
			got, err := ks.kf.KeyfuncCtx(ctx)(&jwt.Token{Header: map[string]any{"alg": h.Alg}})
			if all, ok := got.(jwt.VerificationKeySet); err == nil && ok {
				for _, k := range all.Keys {
					if fits(h.Alg, k) {
						keys, from = append(keys, k), append(from, verifiedBy{source: v.jwksSrc, setKey: k})
					}
				}
			}
		}
	}
	switch {
	case len(keys) == 0:
		if v.jwks != nil && v.jwks.current() == nil {
			return nil, verifiedBy{}, v.keysUnavailable()
		}
		return nil, verifiedBy{}, fail(ReasonAlgorithm, fmt.Errorf("no %s key for a token without kid", h.Alg))
	case len(keys) == 1 || allStatic(from, from[0].source):
		return jwt.VerificationKeySet{Keys: keys}, from[0], nil
	}
	// Several keys, not all one static material: which one signed decides
	// which reload ends the token's requests (a static key removed, or the
	// set removed while a PEM of one of its keys stays), so the signature
	// is checked here, key by key as the parser would, and the parser is
	// handed the one that verifies (it checks it once more: one
	// verification more, for a token without kid of an issuer with several
	// keys of its kind only).
	signed := raw[:strings.LastIndexByte(raw, '.')]
	for i, k := range keys {
		if tok.Method.Verify(signed, tok.Signature, k) == nil {
			return k, from[i], nil
		}
	}
	return nil, verifiedBy{}, fail(ReasonSignature, fmt.Errorf("no %s key of %d verifies a token without kid", h.Alg, len(keys)))
}

// allStatic reports that every key of from is a static key of the source
// src (the same PEM listed twice): which of them verifies changes nothing.
// The key set's keys are all of its one source but each is its own
// material (Trust.setKey), so they are told apart.
func allStatic(from []verifiedBy, src keySource) bool {
	for _, b := range from {
		if b.setKey != nil || b.source != src {
			return false
		}
	}
	return true
}

// fromKeySet looks kid up in the key set, re-fetching it once (rate
// bounded) when the kid is not there: the issuer may have rotated keys.
func (v *Verifier) fromKeySet(ctx context.Context, h header) (any, error) {
	fetched := false
	for {
		ks := v.jwks.current()
		if ks != nil {
			key, err := ks.kf.KeyfuncCtx(ctx)(&jwt.Token{Header: map[string]any{"alg": h.Alg, "kid": h.Kid}})
			if err == nil {
				return v.fitting(h.Alg, key)
			}
			if !isNotFound(err) {
				return nil, fail(ReasonAlgorithm, err) // the JWK's own alg or use forbids it
			}
		}
		if fetched || !v.jwks.refreshUnknown(ctx) {
			if ks == nil {
				return nil, v.keysUnavailable()
			}
			return nil, fail(ReasonUnknownKID, fmt.Errorf("kid %q", truncate(h.Kid, 64)))
		}
		fetched = true
	}
}

// keysUnavailable refuses a token that cannot be judged: no key set was
// ever fetched. The periodic refresh asks again every jwks_min_refresh
// while fetches fail, so that is when to come back. The detail (the log's,
// never the client's) names the issuer's jwks_url key.
func (v *Verifier) keysUnavailable() *Failure {
	f := fail(ReasonKeysUnavailable, fmt.Errorf("no key set fetched yet from %s", v.jwksKey))
	f.RetryAfter = v.jwks.set.MinRefresh
	return f
}

func (v *Verifier) fitting(alg string, key any) (any, error) {
	if !fits(alg, key) {
		return nil, fail(ReasonAlgorithm, fmt.Errorf("key of kind %T cannot verify %s", key, alg))
	}
	return key, nil
}

// classify turns the signature library's error into a Failure.
func classify(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	for _, c := range []struct {
		target error
		reason Reason
	}{
		{jwt.ErrTokenMalformed, ReasonMalformed},
		{jwt.ErrTokenSignatureInvalid, ReasonSignature},
		{jwt.ErrTokenUnverifiable, ReasonSignature},
		{jwt.ErrTokenExpired, ReasonExpired},
		{jwt.ErrTokenNotValidYet, ReasonNotYetValid},
		{jwt.ErrTokenUsedBeforeIssued, ReasonNotYetValid},
		{jwt.ErrTokenInvalidIssuer, ReasonIssuer},
		{jwt.ErrTokenInvalidAudience, ReasonAudience},
	} {
		if errors.Is(err, c.target) {
			return fail(c.reason, err)
		}
	}
	return fail(ReasonClaims, err)
}

// truncate bounds attacker-chosen text before it reaches a log line.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func isNotFound(err error) bool { return errors.Is(err, jwkset.ErrKeyNotFound) }
