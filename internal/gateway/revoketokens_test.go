package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// issuersConfig parses a config with the API key sk-kept (tenant kept),
// the JWT issuers of jwt (YAML under auth.jwt, none when ""), and the
// model m1 on be.
func issuersConfig(t *testing.T, be, jwt string) *config.Config {
	t.Helper()
	src := "admin: {worker_token: work-tok}\nauth:\n  keys: [{key: sk-kept, tenant: kept}]\n"
	if jwt != "" {
		src += "  jwt:\n" + jwt
	}
	src += "models:\n  - name: m1\n    backends:\n      - url: " + be + "\n"
	c, err := config.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c.Log.Access = false
	return c
}

// issuerEntry is one auth.jwt.issuers entry on an HMAC secret.
func issuerEntry(name, extra string) string {
	return "      - {name: " + name + ", issuer: https://" + name + ".test/, audience: sluice, algorithms: [HS256], hmac_secret: " +
		strings.Repeat("k", 32) + extra + "}\n"
}

// After a reload removes a JWT issuer, the queued jobs of the tenants its
// tokens named (its namespace "jwt:<name>:…", and a shared_tenants
// claim no key or remaining issuer names) are refused before any
// backend, as a removed last key's are. Before, revocation covered the
// keys' tenants alone: the removed issuer's jobs ran on the backends. An
// issuer that remains keeps its tenants' jobs, whatever its namespace
// becomes; an issuer listed again lets them run.
func TestReloadRemovingAnIssuerRefusesItsTenantsJobs(t *testing.T) {
	be := newOKBackend(t)
	both := "    issuers:\n" + issuerEntry("corp", "") + issuerEntry("partner", ", shared_tenants: [ops]")
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	t.Cleanup(deps.Transport.CloseIdle)
	rt, err := Build(issuersConfig(t, be.URL, both), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Registry: reg, Now: deps.Now})
	remote := &jobs.HTTPExecutor{Admin: adminServer(t, gw).URL, Token: "work-tok"}
	// run executes tenant's job in process and through a worker: how many
	// backend calls it made, and whether both were refused as revoked.
	run := func(tenant string) (calls int32, revoked bool) {
		t.Helper()
		before := be.calls.Load()
		n := 0
		for _, e := range []jobs.Executor{gw.JobExecutor(), remote} {
			job := &jobs.Job{ID: "job_" + tenant, Tenant: tenant, Path: "/v1/chat/completions", Model: "m1", Class: "batch",
				Body: []byte(`{"model":"m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)}
			res, err := e.Execute(context.Background(), job)
			switch {
			case errors.Is(err, jobs.ErrRevoked):
				n++
			case err != nil || res.StatusCode != http.StatusOK:
				t.Fatalf("%s's job: %v %+v", tenant, err, res)
			}
		}
		if n == 1 {
			t.Fatalf("%s's job refused by one executor only", tenant)
		}
		return be.calls.Load() - before, n == 2
	}
	swap := func(jwt string) {
		t.Helper()
		next, err := Build(issuersConfig(t, be.URL, jwt), deps, gw.Runtime())
		if err != nil {
			t.Fatal(err)
		}
		gw.Swap(next)
	}
	expect := func(when string, want map[string]bool) {
		t.Helper()
		for tenant, refused := range want {
			calls, revoked := run(tenant)
			if revoked != refused || (refused && calls != 0) || (!refused && calls != 2) {
				t.Errorf("%s, %s's jobs: revoked %v, %d backend calls; want revoked %v", when, tenant, revoked, calls, refused)
			}
		}
	}
	expect("before any reload", map[string]bool{"jwt:corp:acme": false, "jwt:partner:acme": false, "ops": false, "kept": false})

	// partner removed: corp is the one issuer left, its tenants "jwt:…".
	swap("    issuers:\n" + issuerEntry("corp", ""))
	expect("partner removed", map[string]bool{
		"jwt:partner:acme": true,  // partner's namespace: not "jwt:" of corp's claim "partner:acme"
		"ops":              true,  // shared by partner alone, no key
		"jwt:corp:acme":    false, // corp remains (renamed tenants are a migration, not a revocation)
		"jwt:acme":         false, // corp's tenant now
		"kept":             false, // a key's tenant
		"ip:10.0.0.1":      false,
	})

	// auth.jwt removed: every token tenant is lost, the keys' kept.
	swap("")
	expect("auth.jwt removed", map[string]bool{"jwt:acme": true, "jwt:corp:acme": true, "jwt:partner:acme": true, "kept": false})

	// Both issuers back: their tenants' jobs run again.
	swap(both)
	expect("both issuers listed again", map[string]bool{"jwt:corp:acme": false, "jwt:partner:acme": false, "ops": false})
}

// A replaced issuer of the same namespace (the single form pointed at a
// new identity provider) keeps the namespace's jobs: its tokens name the
// same tenants, as a key rotated to the same tenant does.
func TestReplacedIssuerKeepsItsNamespacesJobs(t *testing.T) {
	a := newTenants(config.Auth{JWT: config.JWT{JWTIssuer: config.JWTIssuer{Issuer: "https://a/"}}}, stubVerifier{})
	b := newTenants(config.Auth{JWT: config.JWT{JWTIssuer: config.JWTIssuer{Issuer: "https://b/"}}}, stubVerifier{})
	keys := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "acme"}}}, nil)
	var l lostTenants
	if _, n := l.update(a, b); n != 0 || l.refuses("jwt:acme", b) != nil {
		t.Fatalf("issuer replaced in the same namespace: %d lost, jwt:acme refused %v", n, l.refuses("jwt:acme", b))
	}
	if _, n := l.update(b, keys); n != 1 || l.refuses("jwt:acme", keys) == nil {
		t.Fatalf("auth.jwt removed: %d lost, jwt:acme not refused", n)
	}
	if _, n := l.update(keys, a); n != 0 || l.refuses("jwt:acme", a) != nil || len(l.spaces) != 0 {
		t.Fatalf("an issuer back: %d lost, jwt:acme refused %v, lost spaces %v", n, l.refuses("jwt:acme", a), l.spaces)
	}
}
