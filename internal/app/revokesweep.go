package app

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// The revocation sweep ends the queued work of the tenants a reload left
// without a credential (jobs.Store.SweepRevoked): their active batches
// cancelled, their queued jobs failed api_key_revoked. Before, that work
// ended only as workers took it, so with the workers busy, paused or
// absent (queue.workers 0 and no `sluice worker`) a revoked tenant's batch
// showed in_progress and its jobs queued for as long. The worker's path
// stays, for a job taken before the sweep reaches it; both end a job by a
// compare-and-swap from a state only one of them leaves.

const (
	// revokeSweepEvery is the pause between two passes of a sweep, and
	// from the reload to the first (whileBusy's period).
	revokeSweepEvery = time.Second
	// revokeSweepRecords bounds the records one pass reads (active
	// batches and work-stream messages): a backlog of 100,000 jobs is
	// swept in some 200 passes, none holding the store for long.
	revokeSweepRecords = 512
	// revokePassTimeout bounds one pass's calls to the store.
	revokePassTimeout = 30 * time.Second
)

// sweepRevocations runs the revocation sweep until ctx ends: idle (no
// ticker) until a reload revokes (wakeRevokeSweep), then one bounded
// pass per revokeSweepEvery of the app's ticker until the sweep has read
// everything. A reload that revokes again meanwhile starts it over, so
// the work queued before the sweep's place is read for the new tenants
// too. A failed pass (the store away) is tried again at the next tick;
// a queue that is not connected leaves the work to the worker's path.
func (a *App) sweepRevocations(ctx context.Context) {
	var (
		seen     uint64 // the gateway's RevocationGen the sweep started for
		sweeping bool
		// failing: the last pass failed and was logged. The passes go on
		// each revokeSweepEvery while the store is away: one WARN line
		// for the outage, the retries at DEBUG (a WARN a second before).
		failing bool
		place   jobs.RevokeSweep
		total   jobs.RevokePass
	)
	whileBusy(ctx, revokeSweepEvery, a.revokeTicker, a.revokeWake, func() bool {
		if gen := a.gw.RevocationGen(); gen != seen {
			seen, sweeping, place, total = gen, true, jobs.RevokeSweep{}, jobs.RevokePass{}
		}
		if !sweeping {
			return false
		}
		a.jobsMu.Lock()
		q := a.jobs
		a.jobsMu.Unlock()
		if q == nil {
			sweeping = false
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, revokePassTimeout)
		p, err := q.store.SweepRevoked(pctx, a.gw.RevokedTenant, &place, revokeSweepRecords)
		cancel()
		total.Batches += p.Batches
		total.Jobs += p.Jobs
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case !failing:
				a.log.Warn("config reload: sweeping the revoked tenants' queued work (tried again each second, logged at debug until a pass succeeds)",
					"error", err.Error())
			default:
				a.log.Debug("config reload: sweeping the revoked tenants' queued work (tried again)", "error", err.Error())
			}
			failing = true
			return true
		}
		failing = false
		if !p.Done {
			return true
		}
		sweeping = false
		a.log.Info("config reload: revoked tenants' queued work ended (api_key_revoked)",
			"batches_cancelled", total.Batches, "jobs_failed", total.Jobs)
		return false
	})
}

// wakeRevokeSweep tells sweepRevocations a reload revoked a tenant.
func (a *App) wakeRevokeSweep() {
	select {
	case a.revokeWake <- struct{}{}:
	default:
	}
}
