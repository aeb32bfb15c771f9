package gateway

import (
	"net/http"

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
// (proxy.Forwarder.Locate: GET /v1/responses/{id}, a few at a time,
// each within timeouts.connect): the one that answers with the response
// is the pin, and remembered (as probed: no owner recorded, so with auth
// on it is served to whoever presents the id, as a probed follow-up is).
// None holds it, or some could not say: the pool's policy picks, as
// before, and the backend answers for itself.
//
// After the limit stage: the probes are charged as the one request they
// serve, as a follow-up's are, and a refused request makes none. A pool
// of one backend is not asked: its pick is that backend.
type locateStage struct{ g *Gateway }

func (s locateStage) serve(x *exchange) bool {
	if !x.respLocate || x.pool == nil {
		return true
	}
	prev := x.resp.PreviousResponseID
	backends := x.pool.Backends
	if len(backends) < 2 || !saneResponseID(prev) {
		return true
	}
	if len(backends) > maxProbes {
		backends = backends[:maxProbes]
	}
	in := &proxy.FollowUp{Method: http.MethodGet, Path: pathResponses + "/" + prev, Header: x.r.Header,
		RequestID: x.rec.id, ForwardedFor: x.from.forwardedFor}
	b, res := x.rt.forwarder.Locate(x.ctx(), in, backends)
	s.g.followUps.countProbes(res.Probes)
	if b != nil {
		x.respPin = b.Name()
		s.g.owners.remember(prev, respOwner{backend: b.Name(), probed: true})
	}
	return true
}
