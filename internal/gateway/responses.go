package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// The Responses API (POST /v1/responses) takes the same chain as chat:
// identify, parse (openai.ParseResponsesRequest), limit, admit, route,
// forward, record; its answer is read the Responses way (proxy/
// responses.go). What differs is here:
//
//   - it is never cached or coalesced (cacheStage), nor hedged (hedge.go);
//   - background: true is refused (acceptResponses);
//   - the id of each stored response relayed is remembered with its
//     backend and, when auth is on, its tenant (respowners.go), so a
//     request that continues it (previous_response_id) goes to that
//     backend first, and its follow-ups (followup.go) reach it;
//   - as an async job or a Batch API line it runs as chat's do (a job's
//     response is remembered for the job's tenant); background: true is
//     the backend's own queue, outside admission, and is refused.

// pathResponses is the Responses API's path; its follow-ups are below it.
const pathResponses = "/v1/responses"

// errBackground refuses background: true. A background response is
// answered at once (status "queued") and generated afterwards, outside
// any slot: admission's bound on each backend's concurrent work, the
// queue's fairness and deadlines, and the token reconciliation of rate
// limits (the answer has no usage yet) would all be promises the gateway
// makes and could not keep for it.
var errBackground = &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "unsupported_parameter",
	Param: "background", Message: "background responses are not supported by this gateway: they would run on the backend " +
		"outside its admission control; send background: false (the default) and stream the response instead"}

// parseResponses is the parse stage's peek of a Responses API request.
func (x *exchange) parseResponses() (*cache.Parsed, error) {
	peek, rp, err := openai.ParseResponsesRequest(x.body.Bytes())
	if err != nil {
		return nil, err
	}
	x.resp = &rp
	return &cache.Parsed{Peek: peek}, nil
}

// acceptResponses is the parse stage's check of what a Responses API
// request asks beyond the chat family: background is refused, and a
// previous_response_id the gateway knows as another tenant's is answered
// as OpenAI (and the simulator) answer an id nobody holds
// (previousNotFound), so the answer does not tell a tenant that the id
// exists. A previous_response_id this replica does not know, which the
// shared Redis could not be asked about, is refused (previousUnavailable),
// and with auth on so is one it knows only from probing (whose it is
// could not be checked); one neither knows is located on the backends
// (locate.go).
func (g *Gateway) acceptResponses(x *exchange) bool {
	if x.resp.Background {
		x.refuse(errBackground)
		return false
	}
	if prev := x.resp.PreviousResponseID; prev != "" {
		o, ok, err := g.owners.find(x.ctx(), prev)
		if err != nil && (!ok || x.rt.tenants.authOn()) {
			x.refuse(previousUnavailable(prev, err))
			return false
		}
		if ok {
			if !o.shownTo(x.id.tenant) {
				x.refuse(previousNotFound(prev))
				return false
			}
			x.respPin = o.backend
		}
		x.respLocate = !ok
	}
	return true
}

// shownTo: the response may be shown to tenant (it was made for it, or
// for anyone: auth was off, or the gateway found it by probing).
func (o respOwner) shownTo(tenant string) bool { return o.tenant == "" || o.tenant == tenant }

// previousNotFound is OpenAI's answer to a previous_response_id it does
// not hold: a 400, not the 404 of the follow-up routes. A gateway 404
// here would differ from what the backend says of an id nobody holds,
// and so tell the caller that the id is another tenant's. (vLLM answers
// such an id with a 404 naming response_id; behind vLLM the two answers
// still differ in that shape: the id itself, 128 random bits there, stays
// the secret.)
func previousNotFound(id string) *openai.Error {
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "previous_response_not_found",
		Param: "previous_response_id", Message: "Previous response with id '" + openai.Echo(id) + "' not found."}
}

// previousLeft answers a continuation of the caller's own response whose
// backend left the pool (a reload, a discovery change): the response is
// gone with it, for this gateway. OpenAI's answer to a
// previous_response_id it does not hold (previousNotFound's: 400, code
// previous_response_not_found, which clients act on by sending the
// whole conversation again), saying why: the id existed, the caller's
// own (acceptResponses checked), so telling it is no leak. Not a 503:
// no retry brings the backend back into the pool.
func previousLeft(id string) *openai.Error {
	e := previousNotFound(id)
	e.Message = "Previous response with id '" + openai.Echo(id) + "' not found: the backend that held it " +
		"has left this gateway's pool. Send the conversation again without previous_response_id."
	return e
}

// previousUnavailable answers a previous_response_id whose backend the
// gateway cannot know now: not remembered here, and the replicas' shared
// Redis failed or is bypassed (err, an *errIDsUnavailable). The pool's
// policy would pick a backend that may not hold it, and its "not found"
// would tell the client the response is gone when it is on another
// backend; with auth on, the tenant check Redis holds would be skipped.
// A 503 with Retry-After (the wait before Redis is tried again, at least
// a second) says what is true: ask again shortly.
func previousUnavailable(id string, err error) *openai.Error {
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "previous_response_unavailable",
		Param: "previous_response_id", RetryAfter: idsRetry(err),
		Message: "The gateway cannot find which backend holds previous response '" + openai.Echo(id) +
			"' right now (its shared response id store is unavailable). Please retry shortly."}
}

// previousUnlocated answers a previous_response_id no backend was found
// to hold while some of the pool's backends could not be asked
// (locate.go): it may be on one of them. retry is the pool's.
func previousUnlocated(id string, retry time.Duration) *openai.Error {
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "previous_response_unavailable",
		Param: "previous_response_id", RetryAfter: retry,
		Message: "The gateway cannot find which backend holds previous response '" + openai.Echo(id) +
			"' right now (some backends could not be asked). Please retry shortly."}
}

// responseUnlocated is previousUnlocated for a follow-up (followup.go).
func responseUnlocated(id string, retry time.Duration) *openai.Error {
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "response_unavailable",
		RetryAfter: retry,
		Message: "The gateway cannot find which backend holds response '" + openai.Echo(id) +
			"' right now (some backends could not be asked). Please retry shortly."}
}

// responseUnavailable answers a follow-up (GET, DELETE, input_items,
// cancel) with auth on about an id this replica does not know while the
// replicas' shared Redis, which holds whose each id is, failed or is
// bypassed (err): the gateway cannot tell whether the caller may see it.
func responseUnavailable(id string, err error) *openai.Error {
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "response_unavailable",
		RetryAfter: idsRetry(err),
		Message: "The gateway cannot look up response '" + openai.Echo(id) +
			"' right now (its shared response id store is unavailable). Please retry shortly."}
}

// idsRetry is the Retry-After of an answer refused because the shared
// ids' Redis could not be asked (err): the wait before it is tried
// again, at least a second.
func idsRetry(err error) time.Duration {
	retry := time.Second
	var e *errIDsUnavailable
	if errors.As(err, &e) {
		retry = max(e.retry, retry)
	}
	return retry
}

// responseNotFound is the 404 of a response id that is not the caller's
// to see, or that no backend holds.
func responseNotFound(id string) *openai.Error {
	return openai.NotFound("response_not_found", "Response with id '"+openai.Echo(id)+"' not found.")
}

// responsesSelector sets a Responses API call's routing: its prefix key
// (instructions and input, when the policy uses one) and, for a call that
// continues a response, that response's backend, when it is still in the
// pool (remembered, or located: locate.go); one whose backend left the
// pool is refused by the selector (pinLeft, previousLeft).
func (rt *Runtime) responsesSelector(sel *selector, served *Pool, c *upstreamCall) {
	if routing.UsesPrefixKey(served.Policy) {
		sel.req.PrefixKey = openai.ResponsesPrefixKey(c.body.Bytes(), prefixKeyChars)
	}
	if c.pin != "" {
		sel.pin[0], sel.pinFor = backendNamed(served.Backends, c.pin), c.pinFor
	}
}

// backendNamed is the backend of backends named name, or nil.
func backendNamed(backends []*endpoint.Backend, name string) *endpoint.Backend {
	for _, b := range backends {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// rememberResponse notes the relayed response's backend and, when auth
// is on, its tenant.
func (g *Gateway) rememberResponse(rt *Runtime, c *upstreamCall, res *proxy.Result) {
	if res.Backend == nil {
		return
	}
	o := respOwner{backend: res.Backend.Name()}
	if rt.tenants.authOn() {
		o.tenant = c.id.tenant
	}
	g.owners.remember(res.ResponseID, o)
}

// authOn: callers are identified by API keys or JWTs, so a tenant is a
// credential's, not a client address's (which a client behind a NAT, or
// whose address changes, could not keep).
func (t *tenants) authOn() bool { return len(t.byKey) > 0 || t.tokens != nil }

// followUpMetrics counts follow-ups by outcome, and the probes of those
// whose id nobody remembered by how each ended.
type followUpMetrics struct{ outcomes, probes *prometheus.CounterVec }

func newFollowUpMetrics(reg prometheus.Registerer) followUpMetrics {
	m := followUpMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_followups_total",
			Help: "Requests about a stored response (GET, DELETE, input_items, cancel) by how the backend was found: " +
				"known (the id map), probed (asked the backends, one held it), not_found (none did, or another tenant's), " +
				"refused (auth or rate limit), failed (no backend answered, or none held it and some could not say)."}, []string{"outcome"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_followup_probes_total",
			Help: "Backends asked about a response id nobody remembered (a follow-up's, or a previous_response_id's), by how " +
				"each probe ended: answered (relayed, or for a previous_response_id the backend continued there), " +
				"not_found (a 404), failed (unreachable, past timeouts.connect, a redirect, 408, 429 or 5xx), " +
				"cancelled (another backend answered first)."}, []string{"outcome"}),
	}
	for _, o := range []string{"known", "probed", "not_found", "refused", "failed"} {
		m.outcomes.WithLabelValues(o) // every outcome from the start, at 0
	}
	for _, o := range []string{"answered", "not_found", "failed", "cancelled"} {
		m.probes.WithLabelValues(o)
	}
	reg.MustRegister(m.outcomes, m.probes)
	return m
}

// count counts one follow-up and its probes.
func (m followUpMetrics) count(outcome string, p proxy.ProbeTally) {
	m.outcomes.WithLabelValues(outcome).Inc()
	m.countProbes(p)
}

// countProbes counts probes about an id nobody remembered: a
// follow-up's, or a continuation's (locate.go).
func (m followUpMetrics) countProbes(p proxy.ProbeTally) {
	for _, c := range []struct {
		outcome string
		n       int
	}{{"answered", p.Answered}, {"not_found", p.NotFound}, {"failed", p.Failed}, {"cancelled", p.Cancelled}} {
		if c.n > 0 {
			m.probes.WithLabelValues(c.outcome).Add(float64(c.n))
		}
	}
}
