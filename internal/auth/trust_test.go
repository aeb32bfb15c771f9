package auth_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
)

// A token's Trust names the one source of keys that verified it, so that
// a reload removing another key of the issuer (the last step of a static
// key's rotation: the new key added, signing moved to it, the old one
// removed) still trusts it. Each token here is verified once against an
// issuer with two static RSA keys, an hmac_secret and a key set, with and
// without kid (without, several keys of its kind are tried, and the one
// that verified is the one named); then each edit is asked which of them
// it still trusts. Before, a Trust held every source of the issuer and
// any source removed untrusted all its tokens.
func TestTrustNamesTheKeyThatVerified(t *testing.T) {
	r := newTrustRig(t, [2]string{"key-a", "key-b"}, "RS256", "ES256", "HS256")
	a, b, keyA, keyB := r.signers[0], r.signers[1], r.keys[0], r.keys[1]
	rs := func(key any, kid string) string { return r.sign(jwt.SigningMethodRS256, key, kid) }
	held := r.verify(map[string]string{
		"key A, kid":          rs(a.RSA, "key-a"),
		"key A, no kid":       rs(a.RSA, ""),
		"key B, kid":          rs(b.RSA, "key-b"),
		"key B, no kid":       rs(b.RSA, ""),
		"hmac":                r.sign(jwt.SigningMethodHS256, []byte(r.secret), ""),
		"key set, kid":        r.set.RS256(t, claims(r.clk, nil)),
		"key set RSA, no kid": rs(r.set.RSA, ""), // tried after A and B
		"key set EC, no kid":  r.sign(jwt.SigningMethodES256, r.set.EC, ""),
		"key set EC, kid":     r.set.ES256(t, claims(r.clk, nil)),
	}, map[string]string{
		"key B, key A's kid":     rs(b.RSA, "key-a"),
		"key A, no such kid":     rs(a.RSA, "key-x"),
		"key set, key B's kid":   rs(r.set.RSA, "key-b"),
		"a stranger's, no kid":   rs(jwttest.New(t).RSA, ""),
		"hmac of another secret": r.sign(jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), ""),
	})

	byKeyA := []string{"key A, kid", "key A, no kid"}
	byKeyB := []string{"key B, kid", "key B, no kid"}
	bySet := []string{"key set, kid", "key set RSA, no kid", "key set EC, no kid", "key set EC, kid"}
	all := append(append(append([]string{"hmac"}, byKeyA...), byKeyB...), bySet...)
	r.checkTrusts(held, []trustEdit{
		{"nothing edited", nil, nil},
		{"key A removed (a rotation's last step)", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyB} }, byKeyA},
		{"key B removed", func(c *config.JWT) { c.PublicKeys = []config.JWTKey{keyA} }, byKeyB},
		{"key A's file replaced under its kid", func(c *config.JWT) {
			c.PublicKeys = []config.JWTKey{{File: jwttest.WritePEM(t, "a2.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-a"}, keyB}
		}, byKeyA},
		{"a key C added", func(c *config.JWT) {
			c.PublicKeys = append(c.PublicKeys, config.JWTKey{File: jwttest.WritePEM(t, "c.pem", jwttest.New(t).RSAPublicPEM(t)), KID: "key-c"})
		}, nil},
		{"the hmac_secret replaced", func(c *config.JWT) { c.HMACSecret = strings.Repeat("t", 32) }, []string{"hmac"}},
		{"the jwks_url removed", func(c *config.JWT) { c.JWKSURL = "" }, bySet},
		{"another audience", func(c *config.JWT) { c.Audience = "other" }, all},
	})
}

// trustRig is an issuer with two static RSA keys, an hmac_secret and a
// key set (its jwks_url), for the tests asking which running tokens an
// edited config still trusts: tokens are verified once against the
// config, then each edit of it is built and asked of every one.
type trustRig struct {
	t       *testing.T
	clk     *clock
	signers [2]*jwttest.Issuer // hold the static keys' private halves
	keys    [2]config.JWTKey   // public_keys: the signers' public keys
	set     *jwttest.Issuer    // the key set's issuer
	secret  string             // the hmac_secret
	algs    []string           // algorithms
	running *auth.Issuers      // built from the unedited config
}

// newTrustRig is a trustRig whose static keys have kids (empty: none)
// and which allows algs.
func newTrustRig(t *testing.T, kids [2]string, algs ...string) *trustRig {
	t.Helper()
	r := &trustRig{t: t, clk: newClock(), set: jwttest.New(t), secret: strings.Repeat("s", 32), algs: algs}
	for i, kid := range kids {
		r.signers[i] = jwttest.New(t)
		r.keys[i] = config.JWTKey{File: jwttest.WritePEM(t, "static.pem", r.signers[i].RSAPublicPEM(t)), KID: kid}
	}
	r.running = buildIssuers(t, r.config(nil), r.clk)
	return r
}

// config is the rig's issuer config, changed by edit when not nil.
func (r *trustRig) config(edit func(*config.JWT)) config.JWT {
	c := jwtConfig(r.set.URL())
	c.PublicKeys, c.HMACSecret = slices.Clone(r.keys[:]), r.secret
	c.Algorithms = slices.Clone(r.algs)
	if edit != nil {
		edit(&c)
	}
	return c
}

// sign is a token of valid claims signed with key by m, with kid in its
// header unless empty.
func (r *trustRig) sign(m jwt.SigningMethod, key any, kid string) string {
	return jwttest.Sign(r.t, m, key, kid, claims(r.clk, nil))
}

// verify verifies every token by name against the running config; each
// of accepted must verify, each of refused must not. It returns the
// identities of the accepted ones by name.
func (r *trustRig) verify(accepted, refused map[string]string) map[string]auth.Identity {
	r.t.Helper()
	for name, tok := range refused {
		if _, err := r.running.Verify(context.Background(), tok); err == nil {
			r.t.Fatalf("%s: verified; want refused", name)
		}
	}
	held := map[string]auth.Identity{}
	for name, tok := range accepted {
		id, err := r.running.Verify(context.Background(), tok)
		if err != nil {
			r.t.Fatalf("%s: %v", name, err)
		}
		held[name] = id
	}
	return held
}

// trustEdit is a config edit and the held tokens it no longer trusts.
type trustEdit struct {
	name      string
	edit      func(*config.JWT)
	untrusted []string
}

// checkTrusts builds each edit of the config and asks it about every held
// token: trusted unless the edit names it untrusted.
func (r *trustRig) checkTrusts(held map[string]auth.Identity, edits []trustEdit) {
	r.t.Helper()
	names := slices.Sorted(maps.Keys(held))
	for _, tc := range edits {
		next := buildIssuers(r.t, r.config(tc.edit), r.clk)
		for _, name := range names {
			want := !slices.Contains(tc.untrusted, name)
			if got := next.Trusts(held[name].Issuer, held[name].Trust); got != want {
				r.t.Errorf("%s: a token of %s trusted %v; want %v", tc.name, name, got, want)
			}
		}
	}
}
