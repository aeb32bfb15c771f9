package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
)

// Issuers verifies the tokens of one or several issuers (auth.jwt or
// auth.jwt.issuers). With one, every token goes to it, exactly as a lone
// Verifier. With several, the token's iss, read from its payload before
// any signature is checked, picks the issuer, and the token is then
// verified by that issuer's Verifier alone: its keys, algorithms,
// audience and claims, so one provider's key never verifies another's
// token and a provider whose key set is down refuses only its own tokens.
// An iss no issuer has is refused (ReasonIssuer) without touching a key.
type Issuers struct {
	list     []NamedVerifier
	byIss    map[string]*Verifier
	maxBytes int
}

// NamedVerifier is one issuer: its auth.jwt.issuers[].name ("" for the
// single form) and its Verifier.
type NamedVerifier struct {
	Name     string
	Verifier *Verifier
}

// NewIssuers routes tokens to list (non-empty), each built by
// NewVerifier from its config.IssuerConfigs entry with the iss it
// matches. With two or more, each one's tenants and per-key names are
// "jwt:<name>:…" (config.JWT.TokenTenantPrefixFor).
func NewIssuers(c config.JWT, list []NamedVerifier) (*Issuers, error) {
	cfgs := c.IssuerConfigs()
	if len(list) == 0 || len(list) != len(cfgs) {
		return nil, errors.New("auth.jwt: the verifiers do not match the issuers configured")
	}
	s := &Issuers{list: list, byIss: make(map[string]*Verifier, len(list)), maxBytes: int(c.MaxTokenBytes)}
	for i, nv := range list {
		nv.Verifier.prefix = c.TokenTenantPrefixFor(nv.Name)
		if len(c.Issuers) > 0 {
			nv.Verifier.jwksKey = fmt.Sprintf("auth.jwt.issuers[%d].jwks_url", i)
		}
		s.byIss[cfgs[i].JWT.Issuer] = nv.Verifier
	}
	return s, nil
}

// Verify checks token with the verifier of its issuer; the error is a
// *Failure, as Verifier.Verify's.
func (s *Issuers) Verify(ctx context.Context, token string) (Identity, error) {
	if len(s.list) == 1 {
		return s.list[0].Verifier.Verify(ctx, token)
	}
	if len(token) > s.maxBytes {
		return Identity{}, fail(ReasonOversized, fmt.Errorf("%d bytes, bound %d", len(token), s.maxBytes))
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return Identity{}, fail(ReasonMalformed, err)
	}
	v := s.byIss[iss]
	if v == nil {
		return Identity{}, fail(ReasonIssuer, fmt.Errorf("no issuer configured for iss %q", truncate(iss, 64)))
	}
	return v.Verify(ctx, token)
}

// payloadDecoding is how every Verifier's parser decodes a token's
// segments: base64url without padding, strictly (jwt's RawURLEncoding;
// WithPaddingAllowed is not set, so "=" is refused), numbers kept as
// json.Number. peekIssuer decodes the payload with the same options.
func payloadDecoding() []jwt.ParserOption {
	return []jwt.ParserOption{jwt.WithJSONNumber(), jwt.WithStrictDecoding()}
}

// peekIssuer reads the iss claim of token's payload, unverified: only to
// choose whose keys verify it, which then checks iss again. It reads the
// payload as the verifier will, so that a token the verifier accepts is
// never refused here and is routed on the iss the verifier checks: the
// segment decoded by jwt's own DecodeSegment with the verifier's options,
// the claims as jwt.MapClaims through a json.Decoder as jwt.Parser does
// (the first JSON value, what follows it ignored; the key "iss" exactly,
// where a struct field would also take "ISS" or "Iss"), and iss read by
// MapClaims.GetIssuer. The token must have three segments and an iss
// that is a string.
func peekIssuer(token string) (string, error) {
	if strings.Count(token, ".") != 2 {
		return "", errMalformed
	}
	_, rest, _ := strings.Cut(token, ".")
	seg, _, _ := strings.Cut(rest, ".")
	raw, err := jwt.NewParser(payloadDecoding()...).DecodeSegment(seg)
	if err != nil {
		return "", errMalformed
	}
	claims := jwt.MapClaims{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return "", errMalformed
	}
	if _, present := claims["iss"]; !present {
		return "", errMalformed
	}
	iss, err := claims.GetIssuer()
	if err != nil {
		return "", errMalformed
	}
	return iss, nil
}

// IssuerKeySet is one issuer's key set state (/readyz "jwks_issuers").
type IssuerKeySet struct {
	Name  string
	State KeySetState
}

// KeySet is the key sets' state for /readyz: the worst of the issuers
// with a jwks_url (unavailable, then degraded, then ok); holds reports
// that every issuer is a start's key set never fetched, so the replica
// could verify no token (an issuer down while another can verify does not
// take the replica out: its tokens are answered 503
// auth_keys_unavailable, the others' are served). An issuer without a
// jwks_url (public_keys, hmac_secret) can always verify: it never holds.
// ok is false when no issuer has a jwks_url.
func (s *Issuers) KeySet() (state KeySetState, holds, ok bool) {
	rank := map[KeySetState]int{KeySetOK: 0, KeySetDegraded: 1, KeySetUnavailable: 2}
	holds = true
	for _, nv := range s.list {
		st, h, has := nv.Verifier.KeySet()
		if !has {
			holds = false // its static keys verify its tokens
			continue
		}
		if !ok || rank[st] > rank[state] {
			state = st
		}
		ok = true
		holds = holds && h
	}
	return state, ok && holds, ok
}

// KeySets is each issuer's key set state, in config order, for the
// issuers with a jwks_url; nil with one issuer (KeySet says it all).
func (s *Issuers) KeySets() []IssuerKeySet {
	if len(s.list) < 2 {
		return nil
	}
	var out []IssuerKeySet
	for _, nv := range s.list {
		if st, _, has := nv.Verifier.KeySet(); has {
			out = append(out, IssuerKeySet{Name: nv.Name, State: st})
		}
	}
	return out
}

// IssuerFetch is when one issuer's key set was last fetched successfully
// (zero: never), for sluice_auth_jwks_last_fetch_timestamp_seconds.
type IssuerFetch struct {
	Name    string // auth.jwt.issuers[].name; "" for the single form
	Fetched time.Time
}

// KeySetsFetched is each issuer's last key set fetch, in config order, for
// the issuers with a jwks_url (none without one), so a stale provider is
// seen on its own rather than hidden in an aggregate.
func (s *Issuers) KeySetsFetched() []IssuerFetch {
	var out []IssuerFetch
	for _, nv := range s.list {
		if f, has := nv.Verifier.KeySetFetched(); has {
			out = append(out, IssuerFetch{Name: nv.Name, Fetched: f})
		}
	}
	return out
}
