package gateway

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/auth/jwttest"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// issuerReloadGateway serves a gateway over the holding backend whose
// runtimes the test builds from cfg; held opens a request and returns
// once the backend holds it (a stream's first event read).
type issuerReloadGateway struct {
	t       *testing.T
	gw      *Gateway
	srv     *httptest.Server
	deps    Deps
	arrived chan string
	log     *lockedBuffer
}

func newIssuerReloadGateway(t *testing.T, cfg func(be string) *config.Config) (*issuerReloadGateway, string, chan struct{}) {
	beURL, arrived, release := holdingBackend(t)
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg(beURL), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(log, nil)), Registry: reg, Now: deps.Now})
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); deps.Transport.CloseIdle() })
	t.Cleanup(func() { // first: a failed test's held requests end at once
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return &issuerReloadGateway{t: t, gw: gw, srv: srv, deps: deps, arrived: arrived, log: log}, beURL, release
}

// swap reloads to c, as app's reload does (a runtime built taking over
// from the running one, then Swap), and returns the line Swap logged of
// the requests it ended ("" for none): Swap cancels them before it
// returns, so the line says at once what the reload cut.
func (g *issuerReloadGateway) swap(c *config.Config) string {
	g.t.Helper()
	next, err := Build(c, g.deps, g.gw.Runtime())
	if err != nil {
		g.t.Fatal(err)
	}
	g.log.mu.Lock()
	g.log.b.Reset()
	g.log.mu.Unlock()
	g.gw.Swap(next)
	for _, line := range strings.Split(g.log.String(), "\n") {
		if strings.Contains(line, "requests of removed API keys") {
			return line
		}
	}
	return ""
}

// held sends a request with credential (a stream, or not) and returns
// once the backend holds it: a stream with its first event read, a
// non-streamed request's answer to come on the channel.
func (g *issuerReloadGateway) held(credential string, stream bool) (*bufio.Reader, *http.Response, chan *http.Response) {
	t := g.t
	t.Helper()
	out := make(chan *http.Response, 1)
	body := fmt.Sprintf(`{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":%v}`, stream)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+credential)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(out)
			return
		}
		out <- resp
	}()
	hangGuard := time.NewTimer(time.Minute)
	defer hangGuard.Stop()
	select {
	case <-g.arrived:
	case resp := <-out:
		if resp == nil {
			t.FailNow()
		}
		if !stream || resp.StatusCode != http.StatusOK {
			t.Fatalf("answered before it reached the backend: %d %s", resp.StatusCode, readAll(t, resp))
		}
		<-g.arrived
		out <- resp
	case <-hangGuard.C:
		t.Fatal("a request did not reach the backend in a minute")
	}
	if !stream {
		return nil, nil, out
	}
	resp := <-out
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: %q %v", line, err)
	}
	return br, resp, nil
}

// rest reads what is left of a held stream.
func rest(t *testing.T, br *bufio.Reader, resp *http.Response) string {
	t.Helper()
	b, _ := io.ReadAll(br)
	resp.Body.Close()
	return string(b)
}

// cutStream reports whether a stream's rest is the revocation's in-band
// error event, not its end.
func cutStream(s string) bool {
	return strings.Contains(s, `"code":"api_key_revoked"`) && !strings.Contains(s, "[DONE]")
}

// TestReloadRemovingAnIssuerEndsItsTokensRequests: a reload that removes
// a JWT issuer (an auth.jwt.issuers entry) ends the streams and requests
// running under its tokens as a removed API key's are (an in-band
// api_key_revoked event, or 401 api_key_revoked), while an edit that
// keeps the issuer (same iss and key source; here its shared_tenants and
// leeway changed) cuts nothing, and the other issuer's and the API key's
// requests run on to their end. Before, every one of them ran to [DONE].
func TestReloadRemovingAnIssuerEndsItsTokensRequests(t *testing.T) {
	corp, partner := jwttest.New(t), jwttest.New(t)
	const corpIss, partnerIss = "https://corp.test/", "https://partner.test/"
	var be string
	cfg := func(withPartner bool, leeway string) *config.Config {
		jwt := "    issuers:\n      - {name: corp, issuer: " + corpIss + ", audience: sluice, jwks_url: " + corp.URL() + "}\n"
		if withPartner {
			jwt += "      - {name: partner, issuer: " + partnerIss + ", audience: sluice, jwks_url: " + partner.URL() + ", leeway: " + leeway + "}\n"
		}
		c := issuersConfig(t, be, jwt)
		c.Timeouts = testConfig().Timeouts
		return c
	}
	g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(true, "30s") })
	token := func(is *jwttest.Issuer, iss, sub string) string {
		return is.ES256(t, validClaims(jwt.MapClaims{"iss": iss, "sub": sub}))
	}
	pStream, pResp, _ := g.held(token(partner, partnerIss, "p1"), true)
	_, _, pCall := g.held(token(partner, partnerIss, "p2"), false)
	cStream, cResp, _ := g.held(token(corp, corpIss, "c1"), true)
	kStream, kResp, _ := g.held("sk-kept", true)

	if cut := g.swap(cfg(true, "10s")); cut != "" { // partner kept: same iss and key set, another leeway
		t.Fatalf("a reload keeping every issuer: %s; want nothing cut", cut)
	}
	if cut := g.swap(cfg(false, "")); !strings.Contains(cut, "key_requests=0 token_requests=2") { // partner removed
		t.Fatalf("a reload removing partner: %q; want its two requests cut", cut)
	}

	if s := rest(t, pStream, pResp); !cutStream(s) {
		t.Fatalf("the removed issuer's stream after the reload: %q; want an api_key_revoked event and no [DONE]", s)
	}
	call := <-pCall
	if call == nil {
		t.FailNow()
	}
	body := readAll(t, call)
	if _, code, _ := apiErr(t, body); call.StatusCode != http.StatusUnauthorized || code != "api_key_revoked" {
		t.Fatalf("the removed issuer's running request: %d %s; want 401 api_key_revoked", call.StatusCode, body)
	}
	close(release)
	for who, s := range map[string]string{"corp's token": rest(t, cStream, cResp), "the API key": rest(t, kStream, kResp)} {
		if !strings.Contains(s, "[DONE]") || strings.Contains(s, "api_key_revoked") {
			t.Fatalf("%s's stream across the reloads: %q; want it to run to [DONE]", who, s)
		}
	}
}

// TestReloadChangingAnIssuersKeysEndsItsTokensRequests: in the single
// auth.jwt form, what "the same issuer" is across an edit. The same iss
// with its key source moved (another jwks_url: other signers) or its
// audience renamed no longer trusts the tokens it accepted, and their
// running requests end; removing auth.jwt altogether (keys left) ends
// them too; an edit of what only shapes a token's tenant (claims,
// shared_tenants) ends nothing.
func TestReloadChangingAnIssuersKeysEndsItsTokensRequests(t *testing.T) {
	is, other := jwttest.New(t), jwttest.New(t)
	var be string
	type edit func(*config.Config)
	cfg := func(e edit) *config.Config {
		c := jwtConfig(is, be)
		c.Auth.JWT.Issuer, c.Auth.JWT.Audience = jwtIssuer, jwtAudience
		if e != nil {
			e(c)
		}
		return c
	}
	cases := []struct {
		name string
		edit edit
		cut  bool
	}{
		{"shared_tenants and the tenant claim edited", func(c *config.Config) {
			c.Auth.JWT.SharedTenants = []string{"ops"}
			c.Auth.JWT.Claims.Tenant = "org"
		}, false},
		{"nothing edited", nil, false},
		{"the jwks_* timings edited", func(c *config.Config) {
			c.Auth.JWT.JWKSRefresh, c.Auth.JWT.JWKSTimeout = config.Duration(2*time.Hour), config.Duration(3*time.Second)
		}, false},
		{"the provider's keys rotated at the same jwks_url", func(*config.Config) { is.AddRSA(t, "rsa-2") }, false},
		// Sources added: every token accepted before is verified as it was.
		{"a public key added beside the key set", func(c *config.Config) {
			c.Auth.JWT.PublicKeys = []config.JWTKey{{File: pemFile(t, other.RSAPublicPEM(t)), KID: "static-1"}}
		}, false},
		{"an hmac_secret added", func(c *config.Config) {
			c.Auth.JWT.HMACSecret, c.Auth.JWT.Algorithms = strings.Repeat("s", 32), []string{"RS256", "ES256", "HS256"}
		}, false},
		{"another jwks_url", func(c *config.Config) { c.Auth.JWT.JWKSURL = other.URL() }, true},
		{"another audience", func(c *config.Config) { c.Auth.JWT.Audience = "sluice-2" }, true},
		{"auth.jwt removed", func(c *config.Config) { c.Auth.JWT = config.Default().Auth.JWT }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(nil) })
			br, resp, _ := g.held(is.RS256(t, validClaims(jwt.MapClaims{"org": "acme"})), true)
			if cut := g.swap(cfg(tc.edit)); (cut != "") != tc.cut {
				t.Fatalf("the reload's cut: %q; want cut %v", cut, tc.cut)
			}
			if !tc.cut {
				close(release)
			}
			s := rest(t, br, resp)
			if tc.cut != cutStream(s) || (!tc.cut && !strings.Contains(s, "[DONE]")) {
				t.Fatalf("the token's stream after the reload: %q; want cut %v", s, tc.cut)
			}
		})
	}
}

// pemFile writes pem to a file of the test's and returns its path.
func pemFile(t *testing.T, pem []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestReloadRotatingAStaticKeyEndsOnlyWhenTheKeyGoes: an issuer verified
// by public_keys rotates a key by adding the new one, then removing the
// old: the first reload cuts none of the tokens the old key signed (they
// are as trusted as before), the second ends their running requests.
// Before, adding the key cut them too (the issuer's Trust was one digest
// of all its keys).
func TestReloadRotatingAStaticKeyEndsOnlyWhenTheKeyGoes(t *testing.T) {
	old, next := jwttest.New(t), jwttest.New(t)
	oldKey := config.JWTKey{File: pemFile(t, old.RSAPublicPEM(t)), KID: jwttest.RSAKID}
	newKey := config.JWTKey{File: pemFile(t, next.RSAPublicPEM(t)), KID: "rsa-next"}
	var be string
	cfg := func(keys ...config.JWTKey) *config.Config {
		c := jwtConfig(old, be)
		c.Auth.JWT.JWKSURL, c.Auth.JWT.PublicKeys = "", keys
		return c
	}
	g, _, _ := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(oldKey) })
	br, resp, _ := g.held(old.RS256(t, validClaims(jwt.MapClaims{"org": "acme"})), true)
	if cut := g.swap(cfg(oldKey, newKey)); cut != "" {
		t.Fatalf("a reload adding a key: %q; want nothing cut", cut)
	}
	if cut := g.swap(cfg(newKey)); !strings.Contains(cut, "token_requests=1") {
		t.Fatalf("a reload removing the key that signed the token: %q; want its request cut", cut)
	}
	if s := rest(t, br, resp); !cutStream(s) {
		t.Fatalf("the token's stream after its key went: %q; want an api_key_revoked event", s)
	}
}

// TestReloadRemovingTheOldKeyEndsOnlyItsTokens: the last step of a
// static key's rotation (both keys listed, signing moved to the new one,
// the old removed) ends the running requests of tokens the old key signed,
// with or without kid, and none of the new key's, with or without kid
// (without, both keys were tried and the new one verified); they run to
// [DONE]. So does a token of the hmac_secret beside them when the secret
// is replaced: only its own requests end. Before, the removal of either
// key ended every running request of the issuer's tokens (which key
// verified a token was not kept).
func TestReloadRemovingTheOldKeyEndsOnlyItsTokens(t *testing.T) {
	old, next := jwttest.New(t), jwttest.New(t)
	oldKey := config.JWTKey{File: pemFile(t, old.RSAPublicPEM(t)), KID: "rsa-old"}
	newKey := config.JWTKey{File: pemFile(t, next.RSAPublicPEM(t)), KID: "rsa-next"}
	secret := strings.Repeat("s", 32)
	var be string
	cfg := func(secret string, keys ...config.JWTKey) *config.Config {
		c := jwtConfig(old, be)
		c.Auth.JWT.JWKSURL, c.Auth.JWT.PublicKeys = "", keys
		c.Auth.JWT.HMACSecret, c.Auth.JWT.Algorithms = secret, []string{"RS256", "HS256"}
		return c
	}
	g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg(secret, oldKey, newKey) })
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		return jwttest.Sign(t, m, key, kid, validClaims(jwt.MapClaims{"org": "acme"}))
	}
	type stream struct {
		br   *bufio.Reader
		resp *http.Response
	}
	open := func(tok string) stream { br, resp, _ := g.held(tok, true); return stream{br, resp} }
	byOld := []stream{open(sign(jwt.SigningMethodRS256, old.RSA, "rsa-old")), open(sign(jwt.SigningMethodRS256, old.RSA, ""))}
	byNew := []stream{open(sign(jwt.SigningMethodRS256, next.RSA, "rsa-next")), open(sign(jwt.SigningMethodRS256, next.RSA, ""))}
	byHMAC := open(sign(jwt.SigningMethodHS256, []byte(secret), ""))

	if cut := g.swap(cfg(secret, newKey)); !strings.Contains(cut, "token_requests=2") {
		t.Fatalf("a reload removing the old key: %q; want the old key's two requests cut", cut)
	}
	for i, s := range byOld {
		if r := rest(t, s.br, s.resp); !cutStream(r) {
			t.Fatalf("old key's stream %d after its key went: %q; want an api_key_revoked event", i, r)
		}
	}
	if cut := g.swap(cfg(strings.Repeat("t", 32), newKey)); !strings.Contains(cut, "token_requests=1") {
		t.Fatalf("a reload replacing the hmac_secret: %q; want its token's request cut", cut)
	}
	if r := rest(t, byHMAC.br, byHMAC.resp); !cutStream(r) {
		t.Fatalf("the hmac token's stream after the secret was replaced: %q; want an api_key_revoked event", r)
	}
	close(release)
	for i, s := range byNew {
		if r := rest(t, s.br, s.resp); !strings.Contains(r, "[DONE]") || strings.Contains(r, "api_key_revoked") {
			t.Fatalf("new key's stream %d across the reloads: %q; want it to run to [DONE]", i, r)
		}
	}
}

// TestReloadDroppingAnAlgorithmOrRelabellingAKey: a running token is
// judged on the key material that verified it and its alg, not on the
// key's kid. One RSA key, listed without kid, verifies a kid-less RS256 token
// and a kid-less PS256 token; a reload giving the key a kid cuts neither
// (the same key still verifies them), and one dropping RS256 from
// algorithms (PS256 kept, with the same key) cuts the RS256 token's
// request only; the PS256 one runs to [DONE]. Before, the kid given cut
// both, and the dropped algorithm cut nothing.
func TestReloadDroppingAnAlgorithmOrRelabellingAKey(t *testing.T) {
	is := jwttest.New(t)
	file := pemFile(t, is.RSAPublicPEM(t))
	var be string
	cfg := func(kid string, algs ...string) *config.Config {
		c := jwtConfig(is, be)
		c.Auth.JWT.JWKSURL, c.Auth.JWT.PublicKeys = "", []config.JWTKey{{File: file, KID: kid}}
		c.Auth.JWT.Algorithms = algs
		return c
	}
	g, _, release := newIssuerReloadGateway(t, func(u string) *config.Config { be = u; return cfg("", "RS256", "PS256") })
	open := func(m jwt.SigningMethod) (*bufio.Reader, *http.Response) {
		br, resp, _ := g.held(jwttest.Sign(t, m, is.RSA, "", validClaims(jwt.MapClaims{"org": "acme"})), true)
		return br, resp
	}
	rsBR, rsResp := open(jwt.SigningMethodRS256)
	psBR, psResp := open(jwt.SigningMethodPS256)

	if cut := g.swap(cfg("k1", "RS256", "PS256")); cut != "" {
		t.Fatalf("a reload giving the same key a kid: %q; want nothing cut", cut)
	}
	if cut := g.swap(cfg("k1", "PS256")); !strings.Contains(cut, "token_requests=1") {
		t.Fatalf("a reload dropping RS256: %q; want the RS256 token's request cut", cut)
	}
	if r := rest(t, rsBR, rsResp); !cutStream(r) {
		t.Fatalf("the RS256 token's stream after RS256 was dropped: %q; want an api_key_revoked event", r)
	}
	close(release)
	if r := rest(t, psBR, psResp); !strings.Contains(r, "[DONE]") || strings.Contains(r, "api_key_revoked") {
		t.Fatalf("the PS256 token's stream across the reloads: %q; want it to run to [DONE]", r)
	}
}
