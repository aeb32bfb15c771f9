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
