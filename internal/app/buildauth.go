package app

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-gw/sluice/internal/auth"
)

// tokens builds the bearer JWT verifiers (auth.jwt), when on: one per
// issuer (auth.jwt, or each auth.jwt.issuers entry). The static keys are
// re-read on every build; an issuer's key set (JWKS), with its cache and
// refresh goroutine, is kept from prev while its settings are unchanged,
// so a reload neither re-fetches it nor forgets keys fetched after an
// unknown kid, and each issuer's is fetched, cached and refreshed on its
// own. The new verifiers are built aside and swapped in with the runtime;
// a new key set is closed by Retire once no runtime uses it, or by
// discard when the build fails.
func (b *build) tokens() error {
	c := b.cfg.Auth.JWT
	if !c.Enabled() {
		return nil
	}
	var list []auth.NamedVerifier
	for i, ic := range c.IssuerConfigs() {
		var jwks *auth.JWKS
		if ic.JWT.JWKSURL != "" {
			jwks = b.keySet(auth.JWKSSettingsOf(ic.JWT))
		}
		v, err := auth.NewVerifier(ic.JWT, jwks, b.deps.Now)
		if err != nil {
			if len(c.Issuers) > 0 {
				return &issuerError{entry: i, err: err}
			}
			return err
		}
		list = append(list, auth.NamedVerifier{Name: ic.Name, Verifier: v})
	}
	s, err := auth.NewIssuers(c, list)
	if err != nil {
		return err
	}
	b.out.tokens = s
	return nil
}

// keySet is the key set source for set: prev's of the same settings, one
// this build already made (two issuers sharing a key set URL and
// settings share it), or a new one — which takes over the keys of prev's
// source of the same URL, if any (auth.NewJWKSAfter): a reload changing
// only jwks_timeout while the provider is down must not leave the issuer
// without the keys it was verifying with.
func (b *build) keySet(set auth.JWKSSettings) *auth.JWKS {
	for _, j := range b.out.jwks {
		if j.Settings() == set {
			return j
		}
	}
	var j, sameURL *auth.JWKS
	if b.prev != nil {
		for _, p := range b.prev.jwks {
			if p.Settings() == set {
				j = p
				break
			}
			if p.Settings().URL == set.URL && (sameURL == nil || p.Fetched().After(sameURL.Fetched())) {
				sameURL = p // of several, the freshest keys
			}
		}
	}
	if j == nil {
		j = auth.NewJWKSAfter(sameURL, set, b.deps.Logger, b.deps.Now)
		if b.prev == nil {
			// The start's key set holds readiness until fetched; one a
			// reload makes does not (Verifier.KeySet).
			j.MarkStartup()
		}
	}
	b.out.jwks = append(b.out.jwks, j)
	return j
}

// closeJWKS closes bt's key set sources that next does not share.
func (bt *Built) closeJWKS(next *Built) {
	for _, j := range bt.jwks {
		if next == nil || !slices.Contains(next.jwks, j) {
			j.Close()
		}
	}
}

// issuerError is an error of an auth.jwt.issuers entry's verifier, which
// names its keys as the single form's ("auth.jwt.public_keys[0].file"):
// said with the entry's key path ("auth.jwt.issuers[1].public_keys[0].file"),
// the one the file has.
type issuerError struct {
	entry int
	err   error
}

func (e *issuerError) Error() string {
	msg := e.err.Error()
	if rest, ok := strings.CutPrefix(msg, "auth.jwt."); ok {
		return fmt.Sprintf("auth.jwt.issuers[%d].%s", e.entry, rest)
	}
	return fmt.Sprintf("auth.jwt.issuers[%d]: %s", e.entry, msg)
}

func (e *issuerError) Unwrap() error { return e.err }
