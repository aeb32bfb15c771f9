package app

import (
	"github.com/sluice-gw/sluice/internal/auth"
)

// tokens builds the bearer JWT verifier (auth.jwt), when on. The static
// keys are re-read on every build; the issuer's key set (JWKS), with its
// cache and refresh goroutine, is kept from prev while its settings are
// unchanged, so a reload neither re-fetches it nor forgets keys fetched
// after an unknown kid. A new one is closed by Retire once no runtime
// uses it, or by discard when the build fails.
func (b *build) tokens() error {
	c := b.cfg.Auth.JWT
	if !c.Enabled() {
		return nil
	}
	if c.JWKSURL != "" {
		set := auth.JWKSSettingsOf(c)
		if b.prev != nil && b.prev.jwks != nil && b.prev.jwks.Settings() == set {
			b.out.jwks = b.prev.jwks
		} else {
			b.out.jwks = auth.NewJWKS(set, b.deps.Logger, b.deps.Now)
			if b.prev == nil {
				// The start's key set holds readiness until fetched; one a
				// reload makes does not (Verifier.KeySet).
				b.out.jwks.MarkStartup()
			}
		}
	}
	v, err := auth.NewVerifier(c, b.out.jwks, b.deps.Now)
	if err != nil {
		return err
	}
	b.out.tokens = v
	return nil
}

// closeJWKS closes bt's key set source unless next shares it.
func (bt *Built) closeJWKS(next *Built) {
	if bt.jwks != nil && (next == nil || next.jwks != bt.jwks) {
		bt.jwks.Close()
	}
}
