package gateway

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// recordOf is a revocation record in memory (jobs.Store keeps the real one
// in the job store: TestRestartedGatewayRefusesARevokedTenantsJobs, app).
type recordOf struct {
	revoked map[string]bool
	err     error
}

func (r recordOf) Revoked(_ context.Context, tenant string) (bool, error) {
	return r.revoked[tenant], r.err
}
func (recordOf) RecordRevoked(context.Context, []string) error { return nil }
func (recordOf) ClearRevoked(context.Context, []string) error  { return nil }
func (r recordOf) RevokedSpace(_ context.Context, prefix string) (bool, error) {
	return r.revoked["space "+prefix], r.err
}
func (recordOf) RecordRevokedSpaces(context.Context, []string) error { return nil }
func (recordOf) ClearRevokedSpaces(context.Context, []string) error  { return nil }

// The record is asked only about a tenant no key names: a replica that
// still lists the key runs its jobs, and a record that cannot be read
// runs the job rather than end it for good.
func TestRevocationRecordJudgesOnlyUnnamedTenants(t *testing.T) {
	g := &Gateway{}
	cur := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-k", Tenant: "kept"}}}, nil)
	open := newTenants(config.Auth{}, nil)
	if g.recordRefuses(context.Background(), "gone", cur) != nil {
		t.Fatal("no record installed: refused")
	}
	g.SetRevocations(recordOf{revoked: map[string]bool{"gone": true, "kept": true}})
	for _, c := range []struct {
		tenant string
		cur    *tenants
		want   bool
	}{
		{"gone", cur, true},
		{"kept", cur, false},  // named here: served, whatever the record says
		{"newco", cur, false}, // not recorded
		{"ip:10.0.0.1", cur, false},
		{"gone", open, false},
	} {
		if got := g.recordRefuses(context.Background(), c.tenant, c.cur) != nil; got != c.want {
			t.Errorf("%s: refused %v, want %v", c.tenant, got, c.want)
		}
	}
	g.SetRevocations(recordOf{err: errors.New("store down")})
	if g.recordRefuses(context.Background(), "gone", cur) != nil {
		t.Error("record unreadable: refused, want run")
	}
}

// A token tenant is judged by the record of the namespaces it may fall
// in ("jwt:<name>:", then "jwt:"), only where no issuer of the runtime
// names it through a namespace as specific; a record that cannot be read
// runs the job. RevokedSpaces records a removed issuer's namespace, not
// that of an issuer kept by iss or by prefix, and finds a namespace listed
// again.
func TestRevocationRecordJudgesTokenNamespaces(t *testing.T) {
	single := func(iss string) config.JWT { return config.JWT{JWTIssuer: config.JWTIssuer{Issuer: iss}} }
	multi := func(names ...string) config.JWT {
		j := config.JWT{}
		for _, n := range names {
			j.Issuers = append(j.Issuers, config.NamedJWTIssuer{Name: n, JWTIssuer: config.JWTIssuer{Issuer: "https://" + n + ".test/"}})
		}
		return j
	}
	keysOnly := newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-k", Tenant: "kept"}}}, nil)
	ts := func(j config.JWT) *tenants {
		return newTenants(config.Auth{Keys: []config.Tenant{{Key: "sk-k", Tenant: "kept"}}, JWT: j}, stubVerifier{})
	}
	g := &Gateway{}
	g.SetRevocations(recordOf{revoked: map[string]bool{"space jwt:partner:": true, "space jwt:": true}})
	for _, c := range []struct {
		tenant string
		cur    *tenants
		want   bool
	}{
		{"jwt:partner:acme", ts(multi("corp", "other")), true},
		{"jwt:partner:acme", ts(single("https://x.test/")), true}, // "jwt:" is no issuer called partner
		{"jwt:partner:acme", ts(multi("corp", "partner")), false}, // listed here: served
		{"jwt:corp:acme", ts(multi("corp", "other")), false},
		{"jwt:acme", keysOnly, true},
		{"jwt:acme", ts(single("https://x.test/")), false},
		{"jwt:acme", ts(multi("corp", "other")), true},
	} {
		if got := g.recordRefuses(context.Background(), c.tenant, c.cur) != nil; got != c.want {
			t.Errorf("%s on %v: refused %v, want %v", c.tenant, c.cur.spaces, got, c.want)
		}
	}
	g.SetRevocations(recordOf{err: errors.New("store down")})
	if g.recordRefuses(context.Background(), "jwt:acme", keysOnly) != nil {
		t.Error("record unreadable: refused, want run")
	}

	rt := func(j config.JWT) *Runtime { return &Runtime{tenants: ts(j)} }
	for _, c := range []struct {
		name        string
		prev, next  *Runtime
		lost, found []string
	}{
		{"partner removed", rt(multi("corp", "partner")), rt(multi("corp", "other")), []string{"jwt:partner:"}, []string{"jwt:other:"}},
		{"jwt removed", rt(single("https://corp.test/")), &Runtime{tenants: keysOnly}, []string{"jwt:"}, nil},
		{"one to several, same iss", rt(single("https://corp.test/")), rt(multi("corp", "partner")), nil, []string{"jwt:corp:", "jwt:partner:"}},
		{"replaced in its namespace", rt(single("https://a.test/")), rt(single("https://b.test/")), nil, nil},
		{"listed again", &Runtime{tenants: keysOnly}, rt(single("https://corp.test/")), nil, []string{"jwt:"}},
	} {
		lost, found := RevokedSpaces(c.prev, c.next)
		if !slices.Equal(lost, c.lost) || !slices.Equal(found, c.found) {
			t.Errorf("%s: lost %v, found %v; want %v, %v", c.name, lost, found, c.lost, c.found)
		}
	}
}

// RevocationChange: lost are the tenants prev's keys named that next
// orphans; found those next's keys name that prev's did not (a tenant
// named before and after is neither: a lagging replica's reload does not
// clear another's revocation).
func TestRevocationChange(t *testing.T) {
	rt := func(keys ...config.Tenant) *Runtime {
		return &Runtime{tenants: newTenants(config.Auth{Keys: keys}, nil)}
	}
	a, b, c := config.Tenant{Key: "sk-a", Tenant: "a"}, config.Tenant{Key: "sk-b", Tenant: "b"}, config.Tenant{Key: "sk-c", Tenant: "c"}
	lost, found := RevocationChange(rt(a, b), rt(b, c))
	if !slices.Equal(lost, []string{"a"}) || !slices.Equal(found, []string{"c"}) {
		t.Fatalf("lost %v, found %v; want [a], [c]", lost, found)
	}
	if lost, found := RevocationChange(rt(a), rt(a, config.Tenant{Key: "sk-a2", Tenant: "a"})); lost != nil || found != nil {
		t.Fatalf("a key added to a named tenant: lost %v, found %v; want none", lost, found)
	}
}
