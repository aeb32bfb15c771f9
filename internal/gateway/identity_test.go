package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// With keys configured, a key that is not listed is refused even when
// require_key is false; require_key only decides about requests with no key.
func TestUnknownKeyRefusedWhenKeysConfigured(t *testing.T) {
	be := newOKBackend(t)
	for _, require := range []bool{false, true} {
		cfg := testConfig(be.URL)
		cfg.Auth = config.Auth{RequireKey: require, Keys: []config.Tenant{{Key: "sk-good", Tenant: "team"}}}
		srv, _ := startGateway(t, cfg)
		url := srv.URL + "/v1/chat/completions"
		for _, auth := range []string{"Bearer sk-bad", "Bearer sk-goo", "Basic sk-good", "Bearer "} {
			resp := post(t, url, chatBody, "Authorization", auth)
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("require_key %v, %q: status %d", require, auth, resp.StatusCode)
			}
			if _, code, _ := apiErr(t, body); code != "invalid_api_key" {
				t.Fatalf("code %q", code)
			}
		}
		if resp := post(t, url, chatBody, "Authorization", "Bearer sk-good"); readAll(t, resp) == "" || resp.StatusCode != 200 {
			t.Fatalf("require_key %v, listed key: %d", require, resp.StatusCode)
		}
		want := 200
		if require {
			want = http.StatusUnauthorized
		}
		if resp := post(t, url, chatBody); readAll(t, resp) == "" || resp.StatusCode != want {
			t.Fatalf("require_key %v, no key: %d, want %d", require, resp.StatusCode, want)
		}
	}
}

// In open mode an invented bearer is nobody: the per-key, per-tenant and
// per-IP limits all count the client address, however many keys it makes up.
func TestOpenModeInventedKeysShareTheAddressLimits(t *testing.T) {
	for _, scope := range []string{"per_key", "per_tenant", "per_ip"} {
		be := newOKBackend(t)
		cfg := testConfig(be.URL)
		rule := config.RateRule{Requests: limitPtr(t, "rate=1r/m burst=1 nodelay")} // 2 at once
		switch scope {
		case "per_key":
			cfg.RateLimits.PerKey = rule
		case "per_tenant":
			cfg.RateLimits.PerTenant = rule
		default:
			cfg.RateLimits.PerIP = rule
		}
		srv, _ := startGateway(t, cfg)
		codes := []int{}
		for _, auth := range []string{"", "Bearer fresh-1", "Bearer fresh-2", "Bearer fresh-3"} {
			var hdr []string
			if auth != "" {
				hdr = []string{"Authorization", auth}
			}
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody, hdr...)
			readAll(t, resp)
			codes = append(codes, resp.StatusCode)
		}
		if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || codes[3] != 429 {
			t.Fatalf("%s: statuses %v, want 200 200 429 429 (one bucket for the address)", scope, codes)
		}
	}
}

// X-Forwarded-For is believed only from a trusted proxy: then the
// rightmost untrusted address is the client (its own limits), the spoofed
// prefix is neither believed nor passed upstream; from anyone else the
// header changes nothing.
func TestTrustedProxiesDecideTheClientAddress(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		be := newOKBackend(t)
		cfg := testConfig(be.URL)
		cfg.RateLimits.PerIP = config.RateRule{Requests: limitPtr(t, "rate=1r/m")} // 1 at once
		if trusted {
			cfg.Auth.TrustedProxies = []string{"127.0.0.0/8", "10.0.0.0/8"}
		}
		srv, _ := startGateway(t, cfg)
		url := srv.URL + "/v1/chat/completions"
		send := func(xff string) int {
			resp := post(t, url, chatBody, "X-Forwarded-For", xff, "Forwarded", "for=8.8.8.8")
			readAll(t, resp)
			return resp.StatusCode
		}
		if c := send("6.6.6.6, 203.0.113.7, 10.1.2.3"); c != 200 {
			t.Fatalf("trusted %v: first client: %d", trusted, c)
		}
		h := <-be.headers
		wantXFF := "127.0.0.1"
		if trusted {
			wantXFF = "203.0.113.7, 10.1.2.3, 127.0.0.1"
		}
		if got := h.Get("X-Forwarded-For"); got != wantXFF {
			t.Fatalf("trusted %v: upstream X-Forwarded-For %q, want %q", trusted, got, wantXFF)
		}
		if h.Get("Forwarded") != "" {
			t.Fatalf("the client's Forwarded header reached the backend: %q", h.Get("Forwarded"))
		}
		// Another spoofed prefix does not make a new client.
		if c := send("7.7.7.7, 203.0.113.7, 10.1.2.3"); c != 429 {
			t.Fatalf("trusted %v: same client, other spoofed prefix: %d, want 429", trusted, c)
		}
		// Another address behind the trusted proxy is another client; from
		// an untrusted peer it is the same one (the peer).
		want := 429
		if trusted {
			want = 200
		}
		if c := send("203.0.113.8"); c != want {
			t.Fatalf("trusted %v: other forwarded client: %d, want %d", trusted, c, want)
		}
	}
}

// IPv6 clients are known by their /64 for limits: a host that hops
// between addresses of its /64 stays one client (one per_ip bucket, one
// open-mode tenant); the next /64 is another client.
func TestIPv6ClientsShareTheirSlash64Limits(t *testing.T) {
	for _, scope := range []string{"per_ip", "per_tenant"} {
		be := newOKBackend(t)
		cfg := testConfig(be.URL)
		rule := config.RateRule{Requests: limitPtr(t, "rate=1r/m")} // 1 at once
		if scope == "per_ip" {
			cfg.RateLimits.PerIP = rule
		} else {
			cfg.RateLimits.PerTenant = rule // open mode: the tenant is the address
		}
		cfg.Auth.TrustedProxies = []string{"127.0.0.0/8"}
		srv, _ := startGateway(t, cfg)
		send := func(xff string) int {
			resp := post(t, srv.URL+"/v1/chat/completions", chatBody, "X-Forwarded-For", xff)
			readAll(t, resp)
			return resp.StatusCode
		}
		codes := []int{send("2001:db8:1:2::a"), send("[2001:db8:1:2:ffff::1]:443"), send("2001:db8:1:3::a"), send("203.0.113.7")}
		if codes[0] != 200 || codes[1] != 429 || codes[2] != 200 || codes[3] != 200 {
			t.Fatalf("%s: statuses %v, want 200 429 200 200 (one bucket per IPv6 /64)", scope, codes)
		}
	}
}

// A listed key without a tenant is the tenant "key:" and the first 12 hex
// digits of its SHA-256 (the secret never in logs or metrics), and its
// identity carries the digest it was found by, which trackKey uses rather
// than hashing the key again.
func TestListedKeyIdentityCarriesItsDigest(t *testing.T) {
	tn := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-untenanted"}, {Key: "sk-named", Tenant: "team"}}}, nil)
	for _, c := range []struct{ key, tenant string }{
		{"sk-untenanted", "key:"}, // + the digest's first 6 bytes
		{"sk-named", "team"},
	} {
		d := sha256.Sum256([]byte(c.key))
		if c.tenant == "key:" {
			c.tenant += hex.EncodeToString(d[:6])
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
		r.Header.Set("Authorization", "Bearer "+c.key)
		id, err := tn.identify(r, "1.2.3.4")
		if err != nil {
			t.Fatal(err)
		}
		if !id.listed || id.digest != d || id.tenant != c.tenant {
			t.Errorf("key %q: listed %v, digest %x, tenant %q; want listed, %x, %q", c.key, id.listed, id.digest, id.tenant, d, c.tenant)
		}
		if tn.revoked(id.digest) {
			t.Errorf("key %q: its own digest is revoked", c.key)
		}
	}
}
