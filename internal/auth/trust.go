package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/config"
)

// Trust is what a token was accepted on: its issuer's iss and audience,
// the key material that verified its signature (the hmac_secret, the
// public_keys entry's key, or the jwks_url's set), as digests, and the
// token's alg. A reload whose issuer of that iss has the same iss and
// audience, still trusts that key material and still allows that alg
// (Issuers.Trusts) trusts the token still; one that drops the iss,
// renames the audience, removes or changes that material (a leaked
// hmac_secret replaced, the key file that signed it removed or replaced,
// the provider's key set moved to another URL) or drops the token's alg
// from algorithms (RS256 dropped while PS256 keeps the same RSA key,
// HS256 while HS384 keeps the secret) no longer does, and the gateway
// ends the token's running requests as a removed API key's (gateway
// keyRequests): an operator dropping a weak or compromised algorithm
// means its running requests to end, as a removed key's. Any other
// material added or removed cuts nothing: a static key is rotated by
// adding the new one, moving signing to it, and later removing the old
// one, and that last step must end only the requests of tokens the old
// key signed, not those of the new key that stays.
//
// A static key is its material, not its label: its kid is not in it, so
// giving a key a kid, or renaming it, over the same PEM cuts nothing
// (the key still verifies the signature it verified), while another key
// under the same kid is another source.
//
// A key set (jwks_url) is one source whichever of its keys verified the
// token: a key the provider drops from the set at its own rotation ends
// nothing running, as in Envoy's jwt_authn and other gateways, where a
// token is verified when its request starts; new requests with it are
// refused from the next fetch (unknown_kid, or a signature no key held
// verifies). What only shapes a token's tenant or limits (name, claims,
// shared_tenants, leeway, the jwks_* timings) is not in it.
//
// A key of the set is also its own material, as a static key is: a
// reload that drops the set (or moves it) while a static key of the same
// public key stays still trusts the token (the reverse of a move from
// static keys to the set).
type Trust struct {
	claims [sha256.Size]byte
	source [sha256.Size]byte
	alg    string // the token's header alg, on the allow-list when accepted
	// setKey is the key set's key that verified the token (nil for a
	// static key or the secret). It is held, not digested: its material
	// is digested only at a reload whose issuer no longer has the set,
	// so a request pays nothing for it.
	setKey crypto.PublicKey
}

// keySource is a source of keys of an issuer, as a Trust names it.
type keySource = [sha256.Size]byte

// claimsDigest is the part of a Trust of the issuer c that every one of
// its tokens shares.
func claimsDigest(c config.JWT) [sha256.Size]byte { return digest(c.Issuer, c.Audience) }

func hmacSource(secret string) keySource { return digest("hmac_secret", secret) }

func jwksSource(url string) keySource { return digest("jwks_url", url) }

// staticSource is a public_keys entry's: its key's PKIX bytes, not its
// kid, so a kid given or renamed over the same key is the same source
// and a file replaced under the same kid is another.
func staticSource(key crypto.PublicKey) keySource {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil { // readPublicKey admits only kinds it marshals
		der = nil
	}
	return digest("public_key", string(der))
}

// sourcesOf lists every source of the issuer c with the static keys read
// from it (Issuers.Trusts looks a held token's source up in it).
func sourcesOf(c config.JWT, static []staticKey) []keySource {
	var out []keySource
	if c.JWKSURL != "" {
		out = append(out, jwksSource(c.JWKSURL))
	}
	if c.HMACSecret != "" {
		out = append(out, hmacSource(c.HMACSecret))
	}
	for _, k := range static {
		out = append(out, k.src)
	}
	return out
}

// digest hashes fields length-prefixed, so that no two lists of fields
// hash alike.
func digest(fields ...string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range fields {
		writeField(h, []byte(f))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// Trusts reports whether s has an issuer of iss that still trusts a token
// accepted on t before a reload: the same iss and audience, the key
// material that verified it (others may have come or gone), and its alg
// still allowed. The alg is checked against the issuer's algorithms only:
// the material being the same, its kind still fits the alg it fitted.
//
// A static key's material is trusted also while it is a key of the
// issuer's key set, fit for the token's alg (setHolds): the same public
// key given both as a PEM and through the jwks_url, as in a move from
// static keys to the provider's set, is one material, and the reload
// that removes the PEM (the move's last step) ends nothing the set
// still verifies; before, it ended every running request the PEM had
// verified (static keys are tried first), 401 api_key_revoked. The other
// way round, a token a key of the set verified is trusted while a static
// key of that material stays (the alg still allowed: the same material
// fits the same algs), so the reload that drops the set, the last step
// of a move from the set to static keys, ends nothing the PEM verifies.
func (s *Issuers) Trusts(iss string, t Trust) bool {
	v := s.byIss[iss]
	if v == nil || v.claimsDigest != t.claims || !slices.Contains(v.algs, t.alg) {
		return false
	}
	if slices.Contains(v.sources, t.source) || v.setHolds(t.source, t.alg) {
		return true
	}
	return t.setKey != nil && slices.Contains(v.sources, staticSource(t.setKey))
}

// setHolds reports whether the key set v holds now has a key fit for alg
// whose material is src (staticSource; a set's or a secret's source is
// never one: the digests are domain-separated). The set's keys are
// digested at each call: a reload asks once per running token request,
// and only for one whose key material left the static keys.
func (v *Verifier) setHolds(src keySource, alg string) bool {
	if v.jwks == nil || isHMAC(alg) {
		return false
	}
	ks := v.jwks.current()
	if ks == nil {
		return false
	}
	// keyfunc skips the JWKs whose own alg or use forbids alg, as it does
	// for a token without kid (Verifier.key): the set would verify it.
	got, err := ks.kf.KeyfuncCtx(context.Background())(&jwt.Token{Header: map[string]any{"alg": alg}})
	all, ok := got.(jwt.VerificationKeySet)
	if err != nil || !ok {
		return false
	}
	for _, k := range all.Keys {
		if fits(alg, k) && staticSource(k) == src {
			return true
		}
	}
	return false
}
