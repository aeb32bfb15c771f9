package gateway

// RevocationGen counts the reloads (Swap) that left a tenant without a
// credential: a key's tenant with no key left, or a removed issuer's
// namespace or shared pattern. The app's revocation sweep starts again
// whenever it grows, to end the queued work of what was revoked without
// waiting for a worker to take it.
func (g *Gateway) RevocationGen() uint64 { return g.revokeGen.Load() }

// RevokedTenant reports whether a job of tenant is refused now, as a
// worker taking it would be answered (lostTenants.refuses on the current
// runtime): the judgement of the revocation sweep, from this process's
// memory of its reloads. The job store's revocation record is not read:
// the reload that recorded it is this process's, already in memory, and a
// record another process wrote is its own sweep's to act on.
func (g *Gateway) RevokedTenant(tenant string) bool {
	return g.lost.refuses(tenant, g.rt.Load().tenants) != nil
}
