package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Follow-ups of a stored response — GET and DELETE /v1/responses/{id},
// GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel —
// can only be answered by the backend that made it: engines keep
// responses in their own memory. They pass the identify and limit stages
// as inference does (the caller's key or token, then one request against
// its rate limits, no tokens), but are not admitted: a read of a backend's
// memory takes no slot and waits in no queue.
//
// The backend is the one the id map names (respowners.go) when it is
// still configured. An id the map does not know (evicted, expired, made
// before a restart or through another replica) is asked of every backend
// of the deployment, a few at a time (proxy.probeWidth), each within its
// own short bound (proxy.Forwarder.Ask: timeouts.connect, never past
// first_byte), all within timeouts.total: the first that answers anything
// but a 404 is relayed and the others are cancelled; when every backend
// was asked and all answered 404 the gateway answers 404 itself (and
// remembers that for a few seconds: respunknown.go); when some could not
// answer (unreachable, hung, a 5xx, not reached within timeouts.total)
// and the rest said 404, a 503 response_unavailable with Retry-After: the
// response may be on one of those, and a 404 would tell the client it is
// gone. (Until 2026-12-06 only the first 16 were asked: a pool of more
// answered every id the first 16 did not hold 503, and never found one on
// the 17th.) What those rounds cost a tenant when they find nothing is
// bounded (probebudget.go): past its budget, a 429 before asking.
//
// The path is read escaped (r.URL.EscapedPath), as OpenAI routes: an id
// is one segment, so /v1/responses/a%2Finput_items names the response
// "a/input_items" (not a's input items), which is no id any backend
// makes: the 400 OpenAI answers for an id outside its alphabet.
//
// Isolation: with auth on, a response the map knows is shown only to the
// tenant it was made for; any other gets the 404 of an unknown id. That is
// as far as the gateway can promise: an id it does not remember has no
// recorded owner, and is served to whoever presents it (as a bearer
// capability: vLLM's ids hold a random UUID). With the replicas' Redis,
// which keeps the owner of every id any of them relayed, an id this
// replica does not know while Redis cannot be asked is not probed with
// auth on: a 503 with Retry-After (responseUnavailable), as a
// previous_response_id is, not another tenant's response. Without auth
// there is no owner to keep, and the backends are asked.

// maxFollowUpBody bounds the body of a follow-up (a cancel's, usually
// none).
const maxFollowUpBody = 64 << 10

// followUpMethod says whether method is allowed on the route sub ("",
// "input_items" or "cancel") of a response, and what is (Allow); ok is
// false for a route that does not exist.
func followUpMethod(sub, method string) (allowed bool, allow string, ok bool) {
	switch sub {
	case "":
		return method == http.MethodGet || method == http.MethodDelete, "GET, DELETE", true
	case "input_items":
		return method == http.MethodGet, http.MethodGet, true
	case "cancel":
		return method == http.MethodPost, http.MethodPost, true
	}
	return false, "", false
}

// saneResponseID: an id a backend could have made (bounded, printable,
// no path or query characters), safe to quote in an error and to send on
// as a path segment as it is. The check is looser than OpenAI's alphabet
// (letters, digits, _ and -), so that an engine's id with a '.' or ':'
// still reaches its backend; every character it refuses is outside that
// alphabet.
func saneResponseID(id string) bool {
	return id != "" && len(id) <= maxResponseID && printable(id) && !strings.ContainsAny(id, "/?#%\"\\")
}

// maxResponseID bounds an id (vLLM's and OpenAI's are under 100 bytes).
const maxResponseID = 256

// invalidResponseID is OpenAI's 400 for an id that is no id (an id
// outside its alphabet, or too long; vLLM answers an id it could not
// have made with a 400 naming response_id too), in OpenAI's words.
func invalidResponseID(id string) *openai.Error {
	if len(id) > maxResponseID {
		return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "string_above_max_length",
			Param: "response_id", Message: fmt.Sprintf("Invalid 'response_id': string too long. Expected a string with "+
				"maximum length %d, but got a string with length %d instead.", maxResponseID, len(id))}
	}
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value", Param: "response_id",
		Message: "Invalid 'response_id': '" + openai.Echo(id) + "'. Expected an ID that contains letters, numbers, underscores, or dashes, " +
			"but this value contained additional characters."}
}

// followUpRoute reads a follow-up's escaped path: the id (unescaped, one
// segment) and the route below it ("", "input_items" or "cancel"); ok is
// false for a path that names no response (another route, a trailing
// slash, a dot segment, which sent on would name another of the
// backend's URLs: /v1/responses/.. is /v1).
func followUpRoute(escaped string) (id, sub string, ok bool) {
	rest, found := strings.CutPrefix(escaped, pathResponses+"/")
	if !found {
		return "", "", false // /v1%2Fresponses/…: the decoded path matched, the escaped one does not
	}
	rawID, rawSub, slash := strings.Cut(rest, "/")
	id, err1 := url.PathUnescape(rawID)
	sub, err2 := url.PathUnescape(rawSub)
	if err1 != nil || err2 != nil || slash && sub == "" || id == "" || id == "." || id == ".." {
		return "", "", false
	}
	return id, sub, true
}

// serveFollowUp serves a request about a stored response (its path is
// below /v1/responses/).
func (g *Gateway) serveFollowUp(w http.ResponseWriter, r *http.Request, start time.Time, memo *atomic.Value) (logged bool) {
	reqID := requestID(r)
	w.Header()[headerRequestID] = []string{reqID}
	escaped := r.URL.EscapedPath()
	id, sub, ok := followUpRoute(escaped)
	allowed, allow, known := followUpMethod(sub, r.Method)
	if !ok || !known {
		// The path as sent: decoded, /v1/responses%2Fx would read as a
		// follow-up's.
		writeError(w, openai.NotFound("unknown_url", "Unknown request URL: "+openai.Echo(r.Method+" "+escaped)))
		return false
	}
	if !allowed {
		w.Header().Set("Allow", allow)
		writeError(w, openai.MethodNotAllowed(r, strings.Split(allow, ", ")...))
		return false
	}
	if !saneResponseID(id) {
		writeError(w, invalidResponseID(id))
		return false
	}
	rt := g.rt.Load()
	fu := followUp{g: g, rt: rt, w: w, r: r, id: id, start: start}
	defer fu.log(reqID)
	if !fu.identify(memo) {
		return true
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFollowUpBody+1))
	switch {
	case err != nil:
		fu.refuse(apiError(fmt.Errorf("%w: %w", errReadBody, err), ""))
		return true
	case len(body) > maxFollowUpBody:
		refuseRestOfBody(w, r)
		fu.refuse(apiError(proxy.ErrBodyTooLarge, ""))
		return true
	}
	// The path sent on is rebuilt from the id read: the same route the
	// client named, whatever escapes it used.
	path := pathResponses + "/" + id
	if sub != "" {
		path += "/" + sub
	}
	in := &proxy.FollowUp{Method: r.Method, Path: path, RawQuery: r.URL.RawQuery, Header: r.Header, Body: body,
		RequestID: reqID, ForwardedFor: fu.from.forwardedFor}
	fu.ask(in)
	return true
}

// followUp is one follow-up request on its way.
type followUp struct {
	g      *Gateway
	rt     *Runtime
	w      http.ResponseWriter
	r      *http.Request
	id     string
	start  time.Time
	from   client
	tenant string
	// status, outcome and backend are for the access line and the metric.
	status  int
	outcome string
	backend string
	probes  proxy.ProbeTally
}

// identify is the chain's identify and limit stages for a follow-up: the
// caller's credential, then one request charged to its rate limits. One,
// however many backends are probed: the probes are the gateway's doing
// (it does not remember the id), not the client's; a legitimate id found
// by them costs the client nothing more, and what ids nobody holds cost
// is bounded apart, per tenant (probebudget.go), so that a restart's
// lost ids do not spend the clients' request limits.
func (fu *followUp) identify(memo *atomic.Value) bool {
	rt := fu.rt
	fu.from = rt.tenants.client(fu.r, memo)
	id, err := rt.tenants.identifyFrom(fu.r.Context(), credential(fu.r.Header["Authorization"]), headerGet(fu.r.Header, headerPriority), &fu.from)
	if err != nil {
		fu.g.refuseAuth(fu.w, err)
		fu.refuse(apiError(err, ""))
		return false
	}
	fu.tenant = id.tenant
	if rt.limiter == nil {
		return true
	}
	if _, err := rt.rateLimit(fu.r.Context(), fu.w, limitSubject(&id, fu.from.key), 0, fu.start); err != nil {
		fu.refuse(apiError(err, ""))
		return false
	}
	return true
}

func (fu *followUp) refuse(e *openai.Error) {
	fu.status, fu.outcome = e.Status, "refused"
	writeError(fu.w, e)
}

// ask finds the response's backend and relays its answer.
func (fu *followUp) ask(in *proxy.FollowUp) {
	g, rt := fu.g, fu.rt
	var backends []*endpoint.Backend
	probe := true
	o, ok, err := g.owners.find(fu.r.Context(), fu.id)
	if err != nil && rt.tenants.authOn() {
		// Redis, which holds the tenant of each id a replica relayed,
		// could not be asked: a probe would show any tenant's response
		// (and DELETE it) to whoever names its id.
		fu.status, fu.outcome = http.StatusServiceUnavailable, "failed"
		writeError(fu.w, responseUnavailable(fu.id, err))
		return
	}
	if ok {
		if !o.shownTo(fu.tenant) {
			fu.notFound()
			return
		}
		if b := rt.backendNamed(o.backend); b != nil {
			backends, probe = []*endpoint.Backend{b}, false
		}
	}
	var all []*endpoint.Backend
	if probe {
		if g.owners.unknown.known(fu.tenant, fu.id, g.now()) {
			fu.notFound()
			return
		}
		all = rt.probeOrder()
		backends = all
		if retry, ok := g.lookups.take(fu.tenant, len(all), g.now(), "followup"); !ok {
			fu.refuse(lookupsSpent(fu.id, "", retry))
			return
		}
	}
	res := rt.forwarder.Ask(fu.r.Context(), fu.w, in, backends, probe)
	if probe {
		g.lookups.giveBack(fu.tenant, lookupRefund(len(all), res), g.now())
	}
	fu.probes = res.Probes
	if res.Backend != nil {
		fu.backend = res.Backend.Name()
	}
	if res.ForeignError != "" {
		g.log.LogAttrs(context.Background(), slog.LevelWarn, foreignErrorMsg, slog.String("request_id", in.RequestID),
			slog.String("path", telemetry.Clip(fu.r.URL.Path)), slog.String("backend", fu.backend),
			slog.Int("status", res.Status), slog.String("body", telemetry.Clip(res.ForeignError)))
	}
	switch {
	case res.NotFound:
		g.owners.unknown.note(fu.tenant, fu.id, g.now())
		fu.notFound()
		return
	case probe && res.Status == 0:
		// Some backends could not be asked (unreachable, past the probe
		// bound, a 5xx, past timeouts.total) and none of the others
		// holds it: it may be on one of them. The 503 a
		// previous_response_id naming it gets (locate.go), with the
		// pool's Retry-After.
		fu.status, fu.outcome = http.StatusServiceUnavailable, "failed"
		writeError(fu.w, responseUnlocated(fu.id, unlocatedRetry(g.now(), all)))
		return
	case res.Status == 0:
		fu.outcome = "failed"
		e := apiError(res.Err, "")
		if res.Err == nil {
			e = apiError(proxy.ErrNoBackend, "")
		}
		// A 502 says when a backend asked is back, as the inference
		// path's own 502 does (failedPoolRetry): a second while one is
		// usable, else the end of the earliest ejection or open breaker.
		e = failedPoolRetry(e, g.now(), backends)
		fu.status = e.Status
		writeError(fu.w, e)
		return
	}
	fu.status, fu.outcome = res.Status, "known"
	if probe {
		fu.outcome = "probed"
	}
	switch ok := res.Status/100 == 2; {
	case ok && fu.r.Method == http.MethodDelete:
		g.owners.forget(fu.id)
	case ok && probe:
		// Found by asking: its backend is remembered, its owner is not
		// known (shownTo anyone, as before).
		g.owners.remember(fu.id, respOwner{backend: res.Backend.Name(), probed: true})
	}
}

func (fu *followUp) notFound() {
	fu.status, fu.outcome = http.StatusNotFound, "not_found"
	writeError(fu.w, responseNotFound(fu.id))
}

// log counts the follow-up and writes its access line.
func (fu *followUp) log(reqID string) {
	if fu.outcome != "" {
		fu.g.followUps.count(fu.outcome, fu.probes)
	}
	if !fu.rt.Config.Log.Access || !fu.g.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 11)
	var sent int64
	if c, ok := fu.w.(bytesCounter); ok {
		sent = c.bytesSent()
	}
	attrs = accessCore(attrs, reqID, fu.r.Method, fu.r.URL.Path, fu.status, fu.g.now().Sub(fu.start), sent, fu.from.addr, userAgent(fu.r))
	fu.g.log.LogAttrs(context.Background(), slog.LevelInfo, "request", append(attrs,
		slog.String("backend", fu.backend), slog.String("tenant", telemetry.Clip(fu.tenant)), slog.String("lookup", fu.outcome))...)
}

// backendNamed is the runtime's backend named name (any pool), or nil.
func (rt *Runtime) backendNamed(name string) *endpoint.Backend {
	for _, m := range rt.Models {
		if b := backendNamed(rt.Pools[m].Backends, name); b != nil {
			return b
		}
	}
	return nil
}

// probeOrder is the backends to ask for an id the map does not know:
// each backend address once (pools may share one), in config order.
func (rt *Runtime) probeOrder() []*endpoint.Backend {
	var out []*endpoint.Backend
	seen := make(map[string]bool)
	for _, m := range rt.Models {
		for _, b := range rt.Pools[m].Backends {
			if u := b.Target().String(); !seen[u] {
				seen[u] = true
				out = append(out, b)
			}
		}
	}
	return out
}
