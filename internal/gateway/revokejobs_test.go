package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// After a reload removes the last API key of a tenant, that tenant's
// queued jobs (async requests, Batch API lines) are refused before any
// backend: jobs.ErrRevoked from the in-process executor, 410
// api_key_revoked to a `sluice worker` (whose HTTPExecutor reads it as
// ErrRevoked). A tenant that keeps another key keeps its jobs, an
// anonymous tenant's are never refused, nor are those of a tenant this
// process never knew. Before, the removed key's jobs ran on the backends
// as if nothing had changed.
func TestReloadRemovingATenantsLastKeyRefusesItsJobs(t *testing.T) {
	be := newOKBackend(t)
	cfg := func(keys ...config.Tenant) *config.Config {
		c := testConfig(be.URL)
		c.Admin.WorkerToken = "work-tok"
		c.Auth.Keys = keys
		return c
	}
	gone, kept1, kept2 := config.Tenant{Key: "sk-gone-1", Tenant: "gone"}, config.Tenant{Key: "sk-kept-1", Tenant: "kept"},
		config.Tenant{Key: "sk-kept-2", Tenant: "kept"}
	ownTenant := config.Tenant{Key: "sk-own-1"} // a tenant of its own: key:<hash>
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: time.Now, Rand: routing.NewRand(1), Registry: reg}
	t.Cleanup(deps.Transport.CloseIdle)
	rt, err := Build(cfg(gone, kept1, kept2, ownTenant), deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Registry: reg, Now: deps.Now})
	remote := &jobs.HTTPExecutor{Admin: adminServer(t, gw).URL, Token: "work-tok"}
	job := func(tenant string) *jobs.Job {
		return &jobs.Job{ID: "job_" + tenant, Tenant: tenant, Path: "/v1/chat/completions", Model: "m1", Class: "batch",
			Body: []byte(`{"model":"m1","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)}
	}
	ownName := keyTenant(sha256.Sum256([]byte(ownTenant.Key)))
	run := func(tenant string) (calls int32, inProcess, viaWorker error) {
		before := be.calls.Load()
		for i, e := range []jobs.Executor{gw.JobExecutor(), remote} {
			res, err := e.Execute(context.Background(), job(tenant))
			if err == nil && res.StatusCode != http.StatusOK {
				t.Fatalf("%s's job: %d %s", tenant, res.StatusCode, res.Body)
			}
			if i == 0 {
				inProcess = err
			} else {
				viaWorker = err
			}
		}
		return be.calls.Load() - before, inProcess, viaWorker
	}
	for _, tenant := range []string{"gone", "kept", ownName, "ip:10.0.0.1"} {
		if n, a, b := run(tenant); a != nil || b != nil || n != 2 {
			t.Fatalf("before the reload, %s's jobs: %v, %v, %d backend calls; want both run", tenant, a, b, n)
		}
	}

	next, err := Build(cfg(kept1), deps, gw.Runtime()) // sk-gone-1, sk-kept-2 and sk-own-1 removed
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(next)
	for _, tenant := range []string{"gone", ownName} {
		n, a, b := run(tenant)
		if !errors.Is(a, jobs.ErrRevoked) || !errors.Is(b, jobs.ErrRevoked) || n != 0 {
			t.Fatalf("after the reload, %s's jobs: %v, %v, %d backend calls; want ErrRevoked from both, none run", tenant, a, b, n)
		}
	}
	// "kept" still has sk-kept-1; "ip:" tenants have no key to lose; and
	// "newco", which no config of this process named (a key another
	// replica's newer config added), is not taken for revoked.
	for _, tenant := range []string{"kept", "ip:10.0.0.1", "newco"} {
		if n, a, b := run(tenant); a != nil || b != nil || n != 2 {
			t.Fatalf("after the reload, %s's jobs: %v, %v, %d backend calls; want both run", tenant, a, b, n)
		}
	}

	// A key naming the tenant again (the operator undoes the removal, or
	// rotates: new key, same tenant) lets its jobs run.
	again, err := Build(cfg(kept1, config.Tenant{Key: "sk-gone-2", Tenant: "gone"}), deps, gw.Runtime())
	if err != nil {
		t.Fatal(err)
	}
	gw.Swap(again)
	if n, a, b := run("gone"); a != nil || b != nil || n != 2 {
		t.Fatalf("with a key of gone again: %v, %v, %d backend calls; want both run", a, b, n)
	}
}

// orphaned across the auth modes: open mode orphans nobody; with JWTs on,
// a token's namespace and the shared tenants a token may name are not
// orphaned by the last key's removal.
func TestOrphanedTenants(t *testing.T) {
	open := newTenants(config.Auth{}, nil)
	keys := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "acme"}}}, nil)
	jwt := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "acme"}},
		JWT: config.JWT{JWTIssuer: config.JWTIssuer{SharedTenants: []string{"team-*"}}}}, stubVerifier{})
	// Several issuers: a pattern in any entry keeps its tenants.
	multi := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-a", Tenant: "acme"}},
		JWT: config.JWT{Issuers: []config.NamedJWTIssuer{{Name: "a"}, {Name: "b", JWTIssuer: config.JWTIssuer{SharedTenants: []string{"ops"}}}}}}, stubVerifier{})
	for _, c := range []struct {
		t      *tenants
		tenant string
		want   bool
	}{
		{open, "gone", false},
		{keys, "acme", false},
		{keys, "gone", true},
		{keys, "key:0123456789ab", true},
		{keys, "ip:10.0.0.1", false},
		{keys, "jwt:gone", false},
		{jwt, "gone", true},
		{jwt, "team-red", false},
		{jwt, "jwt:x", false},
		{multi, "ops", false},
		{multi, "gone", true},
		{multi, "jwt:b:x", false},
	} {
		if got := c.t.orphaned(c.tenant); got != c.want {
			t.Errorf("orphaned(%q) = %v, want %v", c.tenant, got, c.want)
		}
	}
}

// stubVerifier stands for a JWT verifier (orphaned asks only whether one is set).
type stubVerifier struct{}

func (stubVerifier) Verify(context.Context, string) (auth.Identity, error) {
	return auth.Identity{}, errors.New("stub")
}

// With auth.jwt.issuers, a token is verified by its entry's settings
// alone: auth.jwt's shared_tenants is only the default of entries that
// leave theirs unset (config inheritJWT). A tenant shared at the top but
// by no entry (each wrote its own) is one no token can name: orphaned
// once its last key goes, its jobs refused. The union of every list,
// top level included, kept it and ran a removed key's queued jobs.
func TestOrphanedTenantsOnlyWhatAnIssuerShares(t *testing.T) {
	c, err := config.Parse([]byte(`auth:
  keys: [{key: sk-b, tenant: beta}]
  jwt:
    shared_tenants: [acme]
    issuers:
      - {name: a, issuer: https://a/, audience: s, jwks_url: https://a/k, shared_tenants: []}
      - {name: b, issuer: https://b/, audience: s, jwks_url: https://b/k, shared_tenants: [ops]}
models:
  - name: m1
    backends:
      - url: http://127.0.0.1:9001
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ic := range c.Auth.JWT.IssuerConfigs() {
		if config.SharedTenant(ic.JWT.SharedTenants, "acme") {
			t.Fatalf("issuer %q shares acme: the premise is gone", ic.Name)
		}
	}
	ts := newTenants(c.Auth, stubVerifier{})
	for tenant, want := range map[string]bool{"acme": true, "ops": false, "beta": false} {
		if got := ts.orphaned(tenant); got != want {
			t.Errorf("orphaned(%q) = %v, want %v", tenant, got, want)
		}
	}
}
