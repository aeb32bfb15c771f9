package gateway

import (
	"context"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Revocations is the job store's shared record of the tenants a reload
// left without an API key (jobs.Store): it outlives the process that
// reloaded and is read by every process sharing the store, so a gateway
// restarted with the key removed, or a replica whose config never listed
// it, refuses the tenant's queued jobs too (lostTenants is this process's
// memory of its own reloads).
type Revocations interface {
	Revoked(ctx context.Context, tenant string) (bool, error)
	RecordRevoked(ctx context.Context, tenants []string) error
	ClearRevoked(ctx context.Context, tenants []string) error
}

// SetRevocations installs the job store's revocation record (nil: none,
// the queue is off or not connected yet).
func (g *Gateway) SetRevocations(r Revocations) { g.revocations.Store(&r) }

// recordRefuses is the answer to a job of tenant that the revocation
// record refuses, nil to run it. Only a tenant no key of cur names (and
// no token may name) is looked up, one read of the store per such job: a
// tenant cur names is served whatever the record says, so a replica that
// still lists the key runs its jobs, as it serves its requests, and the
// jobs of the keys listed cost no round trip. A record that cannot be
// read runs the job (logged): the store that gave the worker the job is
// the one that failed, and refusing would end the job for good.
func (g *Gateway) recordRefuses(ctx context.Context, tenant string, cur *tenants) *openai.Error {
	p := g.revocations.Load()
	if p == nil || *p == nil || strings.HasPrefix(tenant, config.TokenTenantPrefix) || !cur.orphaned(tenant) {
		return nil
	}
	revoked, err := (*p).Revoked(ctx, tenant)
	if err != nil {
		if g.log != nil {
			g.log.Warn("job: the revocation record could not be read; running the job of a tenant no key names", "error", err.Error())
		}
		return nil
	}
	if revoked {
		return errTenantRevoked
	}
	return nil
}

// RevocationChange is what a reload from prev to next changed of the
// keys' tenants, for the revocation record: Lost, the tenants prev's keys
// named that next leaves without a credential (as lostTenants counts
// them); Found, those next's keys name that prev's did not (a key naming
// a tenant again clears its record; a tenant named before and after is
// left alone, so a replica whose config lags behind does not clear a
// revocation another replica recorded).
func RevocationChange(prev, next *Runtime) (lost, found []string) {
	if prev == nil || next == nil {
		return nil, nil
	}
	for t := range prev.tenants.named {
		if next.tenants.orphaned(t) {
			lost = append(lost, t)
		}
	}
	for t := range next.tenants.named {
		if _, before := prev.tenants.named[t]; !before {
			found = append(found, t)
		}
	}
	return lost, found
}
