package gateway

import (
	"context"
	"slices"
	"strings"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Revocations is the job store's shared record of the tenants a reload
// left without an API key, and of the token namespaces whose issuer a
// reload removed (jobs.Store): it outlives the process that reloaded and
// is read by every process sharing the store, so a gateway restarted with
// the key or issuer removed, or a replica whose config never listed it,
// refuses the tenant's queued jobs too (lostTenants is this process's
// memory of its own reloads).
type Revocations interface {
	Revoked(ctx context.Context, tenant string) (bool, error)
	RecordRevoked(ctx context.Context, tenants []string) error
	ClearRevoked(ctx context.Context, tenants []string) error
	RevokedSpace(ctx context.Context, prefix string) (bool, error)
	RecordRevokedSpaces(ctx context.Context, prefixes []string) error
	ClearRevokedSpaces(ctx context.Context, prefixes []string) error
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
	if p == nil || *p == nil {
		return nil
	}
	if strings.HasPrefix(tenant, config.TokenTenantPrefix) {
		return g.recordRefusesToken(ctx, *p, tenant, cur)
	}
	if !cur.orphaned(tenant) {
		return nil
	}
	revoked, err := (*p).Revoked(ctx, tenant)
	if err != nil {
		g.unreadRecord(err)
		return nil
	}
	if revoked {
		return errTenantRevoked
	}
	return nil
}

// recordRefusesToken is recordRefuses for a token tenant ("jwt:…"): it
// is refused when a namespace it falls in is recorded lost and cur names
// it through no namespace at least as specific (lostTenants.refusesToken's
// rule). The namespaces it can fall in are two at most, "jwt:<seg>:" and
// "jwt:", so at most two reads, the longer first; none for a tenant an
// issuer of cur names (every token tenant with the single form).
func (g *Gateway) recordRefusesToken(ctx context.Context, r Revocations, tenant string, cur *tenants) *openai.Error {
	for _, prefix := range spacesOf(tenant) {
		if cur.namesInSpace(tenant, len(prefix)) {
			return nil
		}
		revoked, err := r.RevokedSpace(ctx, prefix)
		if err != nil {
			g.unreadRecord(err)
			return nil
		}
		if revoked {
			return errIssuerRevoked
		}
	}
	return nil
}

// spacesOf are the token namespaces tenant may be in, the longer first:
// "jwt:<name>:" of several issuers (when tenant has a second colon), and
// "jwt:" of a single one.
func spacesOf(tenant string) []string {
	rest := strings.TrimPrefix(tenant, config.TokenTenantPrefix)
	if name, _, ok := strings.Cut(rest, ":"); ok && name != "" {
		return []string{config.TokenTenantPrefix + name + ":", config.TokenTenantPrefix}
	}
	return []string{config.TokenTenantPrefix}
}

// unreadRecord logs a revocation record that could not be read (the job
// is run).
func (g *Gateway) unreadRecord(err error) {
	if g.log != nil {
		g.log.Warn("job: the revocation record could not be read; running the job of a tenant no credential names", "error", err.Error())
	}
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

// RevokedSpaces is what a reload from prev to next changed of the token
// namespaces, for the revocation record: Lost, the namespaces of prev's
// issuers that next has not (by iss or prefix, as lostTenants counts
// them: an issuer renamed, or one to several, is kept); Found, those next
// has that prev had not (an issuer listed again clears the record; one
// listed before and after is left alone, as for keys). The shared_tenants
// patterns a removed issuer took along are not recorded: see
// docs/RELIABILITY.md (revoke4).
func RevokedSpaces(prev, next *Runtime) (lost, found []string) {
	if prev == nil || next == nil {
		return nil, nil
	}
	for _, s := range prev.tenants.spaces {
		if !next.tenants.hasSpace(s.prefix, s.iss) {
			lost = append(lost, s.prefix)
		}
	}
	for _, s := range next.tenants.spaces {
		if !slices.ContainsFunc(prev.tenants.spaces, func(p tokenSpace) bool { return p.prefix == s.prefix }) {
			found = append(found, s.prefix)
		}
	}
	return lost, found
}
