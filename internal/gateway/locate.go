package gateway

import (
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// locateStage finds the backend of a response that a Responses API
// request continues (previous_response_id) when no replica remembers it:
// not in this replica's map, and not in the shared Redis (or there is
// none). That happens whenever the owner map lost it: this replica
// restarted (its map is memory), the replica that made it stopped while
// Redis was away (its held write went with it), Redis lost it, the map's
// bound or TTL pushed it out, or replicas share no Redis at all. The
// pool's policy would then pick a backend that may not hold it, and that
// backend's 400 previous_response_not_found would tell the client the
// response is gone while another backend holds it. So the pool's
// backends are asked, as a follow-up about an unknown id asks them
// (proxy.Forwarder.Locate: GET /v1/responses/{id}, every backend of the
// pool, a few at a time, each within timeouts.connect, all within
// timeouts.total): the one that answers with the response
// is the pin, and remembered (as probed: no owner recorded, so with auth
// on it is served to whoever presents the id, as a probed follow-up is).
// When none holds it, the answer is the gateway's, and says what is
// known: every backend of the pool was asked and answered 404, OpenAI's
// 400 previous_response_not_found (and the id is noted unknown for a few
// seconds: respunknown.go); some could not be asked or could not say
// (unreachable, past the probe bound, a 5xx, not reached within
// timeouts.total), a 503
// previous_response_unavailable with the Retry-After of the pool's state
// (unlocatedRetry), as a follow-up about the same id gets. Before, the
// pool's policy picked a backend then, whose own "not found" told the
// client the response was gone while it might be on a backend that could
// not be asked, and the follow-up GET of the same id answered a 502. A
// backend that answered the read with anything else (a 400 for an id it
// could not have made) is the pin: its answer to the continuation is its
// own.
//
// After the limit stage: the probes are charged as the one request they
// serve, as a follow-up's are, and a refused request makes none; a round
// that finds nothing spends the tenant's probe budget (probebudget.go),
// past which the continuation is a 429 before any backend is asked. A pool
// of one backend is not asked: its pick is that backend.
type locateStage struct{ g *Gateway }

func (s locateStage) serve(x *exchange) bool {
	if !x.respLocate || x.pool == nil {
		return true
	}
	prev := x.resp.PreviousResponseID
	all := x.pool.Backends
	if len(all) < 2 || !saneResponseID(prev) {
		return true
	}
	if s.g.owners.unknown.known(x.id.tenant, prev, s.g.now()) {
		x.refuse(previousNotFound(prev))
		return false
	}
	if retry, ok := s.g.lookups.take(x.id.tenant, len(all), s.g.now(), "continuation"); !ok {
		x.refuse(lookupsSpent(prev, "previous_response_id", retry))
		return false
	}
	in := &proxy.FollowUp{Method: http.MethodGet, Path: pathResponses + "/" + prev, Header: x.r.Header,
		RequestID: x.rec.id, ForwardedFor: x.from.forwardedFor}
	b, res := x.rt.forwarder.Locate(x.ctx(), in, all)
	s.g.lookups.giveBack(x.id.tenant, lookupRefund(len(all), res), s.g.now())
	s.g.followUps.countProbes(res.Probes)
	switch {
	case b != nil:
		x.respPin = b.Name()
		s.g.owners.remember(prev, respOwner{backend: b.Name(), probed: true})
	case res.Status != 0:
		x.respPin = res.Backend.Name()
	case res.NotFound:
		s.g.owners.unknown.note(x.id.tenant, prev, s.g.now())
		x.refuse(previousNotFound(prev))
		return false
	default:
		x.refuse(previousUnlocated(prev, unlocatedRetry(s.g.now(), all)))
		return false
	}
	return true
}

// unlocatedRetry is the Retry-After of an id no backend was found to
// hold while some could not be asked: the wait until the earliest of the
// pool's backends that cannot serve now may serve again (poolBackIn, as
// no_healthy_backend's), or upstreamRetry when all can (one timed out,
// or was not reached within timeouts.total: asking again may reach it).
func unlocatedRetry(now time.Time, backends []*endpoint.Backend) time.Duration {
	var out []*endpoint.Backend
	for _, b := range backends {
		if !b.Usable(now) {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return upstreamRetry
	}
	return poolBackIn(now, out)
}
