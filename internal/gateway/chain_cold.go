package gateway

import (
	"errors"
	"fmt"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// The stages' paths a cache hit does not take (refusals, jobs, a miss, a
// stale answer), kept out of the stages' serve methods: a hit runs those
// methods' code lines only, and each line a hit spans costs it a fetch
// into L1i (~3 ns) per request (docs/BENCHMARKS.md §9 Steps 4h and 4i).

// identifyJob identifies a queued job as its tenant, unless the tenant
// was removed since (a reload, or a lost record): it reports whether the
// job goes on. Apart from serve, as refuseIdentity, so that a live
// request's identification (every cache hit) spans fewer code lines
// (docs/BENCHMARKS.md §9 Step 4i).
func (s identifyStage) identifyJob(x *exchange) bool {
	x.id, x.rec.job = x.job.id, true
	refusal := s.g.lost.refuses(x.id.tenant, x.rt.tenants)
	if refusal == nil {
		refusal = s.g.recordRefuses(x.r.Context(), x.id.tenant, x.rt.tenants)
	}
	if refusal != nil {
		x.job.revoked = true
		x.rec.tenant = x.id.tenant
		x.refuse(refusal)
		return false
	}
	return true
}

// refuseIdentity answers a request whose credential was refused.
func (s identifyStage) refuseIdentity(x *exchange, err error) {
	x.rec.cause = s.g.refuseAuth(x.w, err) // the reason goes to the access line only
	x.refuse(apiError(err, ""))
}

// refuseModel answers a request naming no model, or one without a pool
// (parseStage): apart, as refuseBody.
func refuseModel(x *exchange, model string) {
	var e *openai.Error
	if model == "" {
		e = openai.BadRequest("missing_model", "you must provide a model parameter")
	} else {
		e = openai.NotFound("model_not_found", "The model '"+openai.Echo(model)+"' does not exist or you do not have access to it.")
	}
	e.Param = "model"
	x.refuse(e)
}

// refuseBody answers a request whose body could not be read (parseStage):
// apart, so that the stage's code for a body read (every cache hit) spans
// fewer lines (docs/BENCHMARKS.md §9 Step 4i).
func (s parseStage) refuseBody(x *exchange, bound bodyBoundError, err error) {
	switch {
	case errors.Is(err, proxy.ErrBodyTooLarge):
		s.g.bodyMetrics.Refused(netguard.RefusedTooLarge)
		refuseRestOfBody(x.w, x.r)
		over := bound // a copy: only a refusal allocates
		err = &over
	case errors.Is(err, proxy.ErrBodyMemory):
		s.g.bodyMetrics.Refused(netguard.RefusedMemory)
		refuseRestOfBody(x.w, x.r)
	case errors.Is(err, netguard.ErrBodyTimeout):
	default:
		err = fmt.Errorf("%w: %w", errReadBody, err)
		x.rec.cause = err // the client's fault: the detail goes on the access line only
	}
	x.refuse(apiError(err, ""))
}

// notFresh leaves the upstream call for a miss (true), or answers a stale
// hit and refreshes it in the background (false). Apart from serve, so
// that the stage's code for a fresh hit spans fewer code lines
// (docs/BENCHMARKS.md §9 Step 4i).
func (s cacheStage) notFresh(x *exchange, plan cachePlan, hit bool, status int) bool {
	c := x.upstream(plan)
	if !hit {
		// Only a request that queues needs its fingerprint (appointments);
		// a hit, fresh or stale, never does, so it hashes its body once less.
		if c.fingerprint = x.bodyPrint; c.fingerprint == 0 {
			c.fingerprint = s.g.fingerprint(x.id.tenant, x.r.URL.Path, x.body.Bytes())
		}
		c.budget = x.tokenBudget(s.g.now)
		return true
	}
	x.rec.status, x.rec.cache = status, "STALE"
	s.g.revalidate(x.ctx(), x.rt, x.pool, c)
	return false
}

// uncached leaves the upstream call for a request the cache never
// answers (cacheStage): apart, so that the stage's code for a cache hit
// spans fewer lines (docs/BENCHMARKS.md §9 Step 4i). Never cached nor
// coalesced: each response has its own id, one stored has effects on its
// backend, and one that continues another depends on more than its body;
// the model-addressed endpoints are left out until shown as safe
// (endpoints.go).
func (s cacheStage) uncached(x *exchange) {
	c := x.upstream(cachePlan{})
	c.fingerprint = s.g.fingerprint(x.id.tenant, x.r.URL.Path, x.body.Chunks()...)
	c.budget = x.tokenBudget(s.g.now) // a Responses stream's, as chat's; nil for the endpoints (not counted)
}
