package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
)

// A stage is one step of an inference request's path. It either passes
// the request on (true) or answers it — a refusal, a cache hit, the
// backend's answer — which ends the chain (false). Stages write only the
// exchange and their own stores; what they learned is read by the stages
// after them.
type stage interface {
	serve(x *exchange) (next bool)
}

// chain is the order of an inference request's stages, in one place.
// Record (the access line, the metrics, settling the token reservation)
// runs after whichever stage answered: see serve.
func (g *Gateway) chain() []stage {
	return []stage{
		identifyStage{g}, // who: client address, job or worker assertion, tenant, control headers
		parseStage{g},    // what: body read once, strict peek, the model's pool, the admission estimate
		enqueueStage{g},  // Prefer: respond-async leaves the chain here as a job
		demandStage{g},   // a live request's arrival, counted for the traffic forecast
		limitStage{g},    // rate limits, charged per key / tenant / IP / global
		locateStage{g},   // a continued response nobody remembers: which backend holds it
		cacheStage{g},    // answered from the cache, or a cache plan for the answer
		admitStage{},     // the admission terms: a live request's deadline, or spare capacity only
		forwardStage{g},  // admit (fair queue, fallbacks) → route → forward, alone or in a flight
	}
}

// exchange is one inference request on its way through the chain: the
// request value going in, the sink its answer goes to, and what each stage
// learned for the stages after it. Its two largest parts are written only
// when used, and cleared (release) only then: the rate limit charge (rl,
// limited) and the backend call (call, made by upstream).
type exchange struct {
	exchangeState
	// rl is the rate limit charge, settled with the usage at the end; set
	// only with limited.
	rl ratelimit.Result
	// call is the backend call, written by upstream and after it only.
	call upstreamCall
	// ids makes the request ids of the requests x runs (handle), outside
	// exchangeState: release keeps it for x's next request.
	ids openai.RequestIDs
	// spareBody is the body of x's last request, kept by record when
	// nothing else can hold it (no backend call, no job, and record's own
	// proxy.Body.ReleaseLast dropped its last reference) for the parse stage of x's next
	// request to read into: a cache hit allocates no Body.
	spareBody *proxy.Body
}

// exchangeState is the exchange but for its two parts written only when
// used: what release always clears.
type exchangeState struct {
	w   http.ResponseWriter // the sink: the client's connection, or a job's answer
	r   *http.Request
	rt  *Runtime // the runtime the request started on, to its end
	rec record
	// job is set when a queued job runs: by the in-process executor (the
	// job entry, runJob) or by a `sluice worker` asserting its tenant.
	job    *jobCall
	hdr    requestHeaders // the request headers the stages read, read once (handle)
	from   client
	id     identity
	ctl    controlHeaders
	body   *proxy.Body
	parsed *cache.Parsed
	// resp is a Responses API request's fields beyond the peek (nil for
	// any other request): it is never cached, and its follow-ups are
	// routed to the backend that made the response it continues.
	resp *openai.ResponsesPeek
	// respPin names the backend that made the response a Responses API
	// request continues (previous_response_id), when the gateway knows it.
	respPin string
	// respLocate: the response it continues is known neither here nor in
	// the shared Redis: the locate stage asks the backends (locate.go).
	respLocate bool
	// ep is the model-addressed endpoint the request is to (rerank,
	// tokenize, ...: endpoints.go), EndpointNone for the chat family and
	// the Responses API; epInput is its input's bytes (parseEndpoint).
	ep      openai.ModelEndpoint
	epInput int
	pool    *Pool
	cost    float64 // admission.EstimateCost of the request (parse stage)
	// answer is the bound of a generating request's answer in tokens
	// (max_tokens, or admission.default_max_tokens; parse stage), for a
	// non-streamed request's longer wait (answerSlack); 0: none.
	answer int
	// retryKey identifies the request across its client's retries, and
	// retry says it is one of a refused request (demandStage); bodyPrint
	// is its body fingerprint when retryKey is it (0: not computed).
	retryKey, bodyPrint uint64
	retry               bool
	// limited: rl is set (a charge to settle); called: call is set.
	limited, called bool
	// inflight: counted in the in-flight gauge (it passed the method check).
	inflight bool
	// vals back the answer header values the chain sets (answerValues).
	vals *answerValues
	// connMemo is the connection's netguard.ConnMemo, nil for none
	// (handle): identify keeps the connection's client there.
	connMemo *atomic.Value
	// untrack ends the request's registration under its API key
	// (trackKey); nil when it has none.
	untrack func()
	// ra reads the backend's answer ahead of a slow client (armed by
	// serveDirect): made by the forward stage for a request from the
	// public listener, so an answer from an earlier stage (a refusal, a
	// cache hit) costs none; handle waits for it to drain after record.
	ra *proxy.ReadaheadWriter
}

func (x *exchange) ctx() context.Context { return x.r.Context() }

// refuse answers x with e from a stage before admission, dated at the
// request's arrival when it has a Date (stampDate): nothing before
// admission waits, except a shared rate limit store that fails, whose
// refusal keeps net/http's Date.
func (x *exchange) refuse(e *openai.Error) {
	if e.Code != codeStoreUnavailable {
		x.vals.stampDate(x.w.Header())
	}
	x.rec.fail(x.w, e)
}

// serve runs x through the chain, then records it whatever stage answered.
func (g *Gateway) serve(x *exchange) {
	defer g.record(x)
	if x.r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		x.refuse(openai.MethodNotAllowed(x.r, http.MethodPost))
		return
	}
	g.metrics.Inflight.Inc()
	x.inflight = true
	for _, s := range g.stages {
		if !s.serve(x) {
			return
		}
	}
}

// handle runs r through the chain with its answer going to w; job is nil
// for a request from the public listener; ep is the model-addressed
// endpoint r is to (openai.EndpointOf its path), EndpointNone for the
// chat family and the Responses API. It returns once the client has
// the whole answer or was cut, though the backend and the request's slots
// may be released before that (read-ahead: proxy/readahead.go).
// Exchanges are reused: nothing keeps one once the chain has run (flights
// copy what they keep). start is g.now() at arrival; vals back the answer
// header values the chain sets (answerValues); memo is the connection's
// netguard.ConnMemo (nil: none). kept is where the connection keeps an
// exchange for its requests (guarded.exchangeSlot; nil: none): the one
// there, else one from the pool, left there for the next request.
func (g *Gateway) handle(w http.ResponseWriter, r *http.Request, job *jobCall, ep openai.ModelEndpoint, start time.Time, vals *answerValues, memo *atomic.Value, kept **exchange) {
	var x *exchange
	if kept != nil {
		x = *kept
	}
	if x == nil {
		x, _ = g.exchanges.Get().(*exchange)
		if x == nil {
			x = new(exchange)
		}
		if kept != nil {
			*kept = x
		}
	}
	x.hdr.read(r.Header)
	reqID := x.hdr.requestID
	if !saneID(reqID) {
		reqID = x.ids.New()
	}
	vals.id[0] = reqID
	w.Header()[headerRequestID] = vals.id[:]
	// x is zero (new, or cleared by release): set only what is known, not
	// a whole new exchange, which would clear its ~1KB once more.
	x.w, x.r, x.rt, x.job, x.vals, x.connMemo, x.ep = w, r, g.rt.Load(), job, vals, memo, ep
	x.rec.id, x.rec.method, x.rec.path, x.rec.start, x.rec.ctx = reqID, r.Method, r.URL.Path, start, r.Context()
	x.rec.userAgent = x.hdr.userAgent
	x.rec.sent, _ = w.(bytesCounter)
	defer g.release(x, kept == nil)
	if job != nil {
		g.tally.jobsRunning.Add(1)
		defer g.tally.jobsRunning.Add(-1)
	}
	g.serve(x)
}

// release waits for the read-ahead, if any, to drain, then recycles x,
// cleared: its charge and its call only when set (a cache hit has neither
// without rate limits: ~40% of the exchange's bytes not cleared again).
// pooled: x goes back to the pool (else its connection keeps it).
func (g *Gateway) release(x *exchange, pooled bool) {
	if x.ra != nil {
		x.ra.Finish()
	}
	if x.limited {
		x.rl = ratelimit.Result{}
	}
	if x.called {
		x.call = upstreamCall{}
	}
	x.exchangeState = exchangeState{}
	if pooled {
		g.exchanges.Put(x)
	}
}

// record is the chain's last step, run after whichever stage answered:
// settle the token reservation (settle), release the body (unless the
// relay did, as soon as its stream was under way: upstreamCall.handsBody),
// then the access line and the metrics.
func (g *Gateway) record(x *exchange) {
	if x.limited {
		g.settle(x)
	}
	if x.called { // awaitRetry's first test, without a call for a cache hit
		g.awaitRetry(x) // its key may hash the body
	}
	if x.body != nil && !x.rec.result.BodyReleased {
		// Without a backend call (flights, the relay, the read-ahead hold
		// the body) or a job, nothing but x points to it: the next
		// request reads into it (spareBody). Only if this release was the
		// last: a holder that dropped the last reference itself may still
		// be giving its buffers back over the fields (the gate alone
		// would make that impossible today; ReleaseLast makes it so by
		// construction).
		if x.body.ReleaseLast() && !x.called && x.job == nil {
			x.spareBody = x.body
		}
	}
	if x.inflight {
		g.metrics.Inflight.Dec()
	}
	if x.rec.client == "" { // refused before identify (a method other than POST)
		x.rec.client = x.rt.tenants.client(x.r, x.connMemo).addr
	}
	// The access line and the duration tell the answer as the client got
	// it, as nginx's $request_time and $body_bytes_sent: an answer read
	// ahead is recorded once its drain has written the last byte (or
	// failed), not when its backend finished; a slow reader's line came
	// seconds early, with the bytes still held. The backend, the slots and
	// the token settle above are already released (read-ahead's point).
	if x.ra != nil {
		x.ra.Finish()
	}
	if x.untrack != nil {
		x.untrack()
	}
	g.finish(&x.rec)
}

// settle corrects x's token reservation to what its answer cost the
// backends: the usage a backend reported; nothing for a request no
// backend worked on (unreached, answered from the cache or by another
// request's flight, or declined by its backend); for a stream with no
// usage (its client asked for none, or its backend ignored
// stream_options.include_usage), the prompt's estimate and the tokens
// relayed (openai.CompletionTokens: the events carrying text, or their
// text's bytes / 4 when more, for servers that send several tokens an
// event). Anything else (a backend error
// or a stream cut before any text, with no usage) keeps the estimate: the
// backend may have spent it. Request counts always stay, as nginx
// limit_req counts every request.
func (g *Gateway) settle(x *exchange) {
	if x.rec.flightSettles {
		return
	}
	res := &x.rec.result
	var tokens int64
	switch {
	case res.UsageKnown:
		tokens = int64(res.Usage.PromptTokens + res.Usage.CompletionTokens)
	case unreached(&x.rec), x.rec.cache != "", declined(&x.rec):
	case res.TextEvents > 0 && x.body != nil:
		// Len: the body may be released already (record).
		tokens = int64(admission.EstimateCost(int(x.body.Len()), 0, 0)) + openai.CompletionTokens(res.TextEvents, res.TextBytes)
	default:
		return
	}
	x.rl.Reconcile(context.WithoutCancel(x.ctx()), tokens, g.now())
}

// unreached reports a request refused after its rate limits were charged
// and before any backend was sent it: shed or timed out in the admission
// queue, no healthy backend, the client gone while it waited, a job
// finding no room (it runs, and is charged, again later). No backend
// spent a token on it, so its token reservation is given back.
func unreached(rec *record) bool { return rec.result.Attempts == 0 && rec.status >= 400 }

// declined reports a request its backends refused without generating: an
// overload refusal (429, 503: the seed's "server busy") or a request
// refused as invalid (another 4xx, such as vLLM's 400 for a prompt over
// the context), with no usage. A 408 or a client gone (499) may come after
// work, and keep the estimate.
func declined(rec *record) bool {
	s := rec.status
	return !rec.result.UsageKnown && (s == http.StatusServiceUnavailable ||
		s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != 499)
}

// identifyStage decides who is asking: the client address (behind
// trusted proxies), a job's tenant or a worker's assertion of one, else
// the tenant of the API key; then the control headers, validated before
// anything is charged.
type identifyStage struct{ g *Gateway }

func (s identifyStage) serve(x *exchange) bool {
	x.from = x.rt.tenants.client(x.r, x.connMemo)
	x.rec.client = x.from.addr
	if x.job != nil {
		if !s.identifyJob(x) {
			return false
		}
	} else {
		// Only the admin listener's worker entry may name a job's tenant.
		if x.hdr.jobTenant {
			x.refuse(jobTenantRefusal())
			return false
		}
		if x.rt.tenants.anonymous(x.hdr.authorization, x.hdr.priority, &x.from) {
			setAnonymous(&x.id, &x.from) // x.id is zero here (handle, release)
		} else if !s.identified(x) {
			return false
		}
	}
	x.rec.tenant = x.id.tenant
	ctl, err := readControlHeaders(x.hdr.maxWait, x.hdr.prefer, x.hdr.progress)
	if err != nil {
		x.refuse(err)
		return false
	}
	x.ctl = ctl
	return true
}

// identified is the identify stage for a caller other than open mode's
// anonymous one: a key, a token, a priority asked, or keys required.
func (s identifyStage) identified(x *exchange) bool {
	id, err := x.rt.tenants.identifyFrom(x.ctx(), x.hdr.authorization, x.hdr.priority, &x.from)
	if err != nil {
		s.refuseIdentity(x, err)
		return false
	}
	x.id = id
	if id.listed || id.token {
		s.g.trackKey(x)
	}
	return true
}

// parseStage reads the body once (bounded in size, time and the global
// budget), peeks at the fields the gateway acts on, finds the model's
// pool and estimates the request's tokens for admission (read by demand
// and limit). It runs after identify, so an unknown caller costs no body read.
type parseStage struct{ g *Gateway }

func (s parseStage) serve(x *exchange) bool {
	if x.hdr.encoding != nil && codedBody(x.hdr.encoding) {
		// RFC 9110 15.5.16: say which codings would have been accepted.
		x.w.Header().Set("Accept-Encoding", "identity")
		x.refuse(errContentEncoding)
		return false
	}
	bound := x.bodyBound()
	var body *proxy.Body
	var err error
	if x.ep.Multipart() {
		// A form is read only in chunks: never copied whole.
		body, err = s.g.bodies.ReadBodyChunks(x.r.Body, x.r.ContentLength, bound.limit)
	} else {
		body, err = s.g.bodies.ReadBodyReusing(x.spareBody, x.r.Body, x.r.ContentLength, bound.limit)
		x.spareBody = nil // this request's now (or lost with an error)
	}
	if err != nil {
		s.refuseBody(x, bound, err)
		return false
	}
	x.body = body
	var parsed *cache.Parsed
	if x.ep != openai.EndpointNone {
		parsed, err = x.parseEndpoint()
	} else if x.r.URL.Path == pathResponses { // a length compare for the other paths
		parsed, err = x.parseResponses()
	} else {
		parsed, err = x.rt.parse(body.Bytes())
	}
	if err != nil {
		x.refuse(apiError(err, "")) // an *openai.Error naming the field
		return false
	}
	x.parsed = parsed
	if parsed.Peek.Model == "" && x.ep == openai.EndpointModerations {
		if err := x.rt.defaultModeration(&parsed.Peek); err != nil {
			x.refuse(err)
			return false
		}
	}
	peek := &parsed.Peek // read only from here on: not copied
	x.rec.model, x.rec.stream = peek.Model, peek.Stream
	if peek.Model != "" {
		x.pool = x.rt.pool(peek.Model)
	}
	if x.pool == nil {
		refuseModel(x, peek.Model)
		return false
	}
	x.rec.modelIn = x.rt
	if x.resp != nil && !s.g.acceptResponses(x) {
		return false
	}
	// The admission estimate, read by the demand and limit stages.
	switch {
	case x.ep != openai.EndpointNone:
		x.cost = x.endpointCost()
	case x.r.URL.Path == pathEmbeddings: // a length compare for the chat family's paths
		x.cost = prefillCost(len(body.Bytes()))
	default:
		// Each of n choices (best_of generated) may be max_tokens long;
		// the prompt is read once. (Azure OpenAI's limits estimate
		// max_tokens x best_of alike.)
		c := peek.Completions()
		x.cost = admission.EstimateCost(len(body.Bytes()), c*peek.MaxTokens, c*x.rt.Config.Admission.DefaultMaxTokens)
		// Its n choices decode side by side: the answer takes as long as one.
		x.answer = peek.MaxTokens
		if x.answer <= 0 {
			x.answer = x.rt.Config.Admission.DefaultMaxTokens
		}
	}
	return true
}

// enqueueStage: Prefer: respond-async queues the request as a job (202 and
// /v1/jobs/{id}) to run when the pool has spare capacity; it re-enters the
// chain then, through the job entry. It is charged when it runs, not here
// (see docs/RELIABILITY.md, "Jobs and webhooks").
type enqueueStage struct{ g *Gateway }

func (s enqueueStage) serve(x *exchange) bool {
	if x.job != nil || !x.ctl.async || x.ep != openai.EndpointNone { // a preference they ignore (endpoints.go)
		return true
	}
	x.rec.status = s.g.acceptAsync(x.w, x.r, x.body.Bytes(), x.parsed.Peek, x.id)
	// The job's id for the access line: its runs are logged under request
	// ids <job>-<attempt>, so the submission's line is what ties the
	// client's request id to them.
	if id, ok := strings.CutPrefix(x.w.Header().Get("Location"), "/v1/jobs/"); ok { // batchapi.Handler.Accept's
		x.rec.jobID = id
	}
	return false
}

// limitStage charges the rate limits: requests and estimated tokens per
// key / tenant / IP / global. A job is charged when it runs, to its tenant
// (and the global limit): its key and address are the submitter's, long
// gone.
type limitStage struct{ g *Gateway }

func (s limitStage) serve(x *exchange) bool {
	if x.rt.limiter == nil {
		return true
	}
	subject := limitSubject(&x.id, x.from.key)
	if x.job != nil {
		subject = ratelimit.Subject{Tenant: x.id.tenant}
	}
	rl, err := x.rt.rateLimit(x.ctx(), x.w, subject, x.cost, x.rec.start)
	if err != nil {
		if x.job != nil {
			x.job.throttled = true
		}
		x.refuse(apiError(err, x.parsed.Peek.Model))
		return false
	}
	x.rl, x.limited = rl, true
	return true
}

// cacheStage answers deterministic requests from the cache when it can (a
// stale answer is refreshed in the background), else leaves the upstream
// call, with the plan for filling the cache with the backend's answer.
type cacheStage struct{ g *Gateway }

func (s cacheStage) serve(x *exchange) bool {
	if x.resp != nil || x.ep != openai.EndpointNone {
		s.uncached(x)
		return true
	}
	var rl *ratelimit.Result
	if x.limited {
		rl = &x.rl
	}
	plan, hit, status, stale := x.rt.cacheLookup(x.ctx(), x.w, x.vals, x.r, cacheBypassed(x.hdr.cacheControl), x.body.Bytes(), x.parsed, x.pool, &x.id, rl, x.rec.start)
	if hit && !stale {
		x.rec.status, x.rec.cache = status, "HIT"
		return false // a fresh hit calls no backend: it needs no call
	}
	return s.notFresh(x, plan, hit, status)
}

// kvNeed is admission.EstimateKVNeed of a generating request (the parse
// stage's default case: the chat family and the Responses API), 0 for
// any other (the ramp counts its cost). The ramp's reported room counts
// the answer clipped: no engine holds a whole max_tokens when it starts a
// request. Estimated here, for the requests that go upstream: a cache hit
// needs none (docs/BENCHMARKS.md §9 Step 9a).
func (x *exchange) kvNeed() float64 {
	if x.ep != openai.EndpointNone || x.r.URL.Path == pathEmbeddings {
		return 0
	}
	peek := &x.parsed.Peek
	return admission.EstimateKVNeed(len(x.body.Bytes()), peek.MaxTokens, x.rt.Config.Admission.DefaultMaxTokens, peek.Completions())
}

// upstream sets x.call, the backend call the request makes (or its stale
// answer's revalidation), from what the stages before learned, and
// returns it. Field by field into the exchange's call, which is zero
// until here (handle, release): a composite literal would build the whole
// call aside and copy it in.
func (x *exchange) upstream(plan cachePlan) *upstreamCall {
	x.called = true
	c := &x.call
	c.path, c.rawQuery, c.header, c.body, c.peek = x.r.URL.Path, x.r.URL.RawQuery, x.r.Header, x.body, x.parsed.Peek
	c.id, c.reqID, c.ip, c.forwardedFor = x.id, x.rec.id, x.from.key, x.from.forwardedFor
	c.cost, c.kvNeed, c.plan, c.retry = x.cost, x.kvNeed(), plan, x.retry
	c.pin, c.pinFor = x.respPin, ""
	if c.pin != "" {
		c.pinFor = x.resp.PreviousResponseID
	}
	c.keepID = x.resp != nil && x.resp.Store
	c.cpuOnly, c.ep = x.ep.CPUOnly(), x.ep
	c.metered = x.limited && x.rl.ChargesTokens()
	c.countText = c.metered && x.parsed.Peek.Stream && x.ep == openai.EndpointNone
	c.budget = nil // set by the cache stage for a miss (tokenBudget)
	return c
}

// admitStage sets the terms on which the request may take a slot, by its
// kind: a live request waits its fair share until its class's deadline
// (or the client's X-Sluice-Max-Wait); a job never queues — it takes a
// free slot at once or is refused, and goes back to the job queue. A job
// run in-process is also spare work: its identity carries the preempt
// hook (runJob), so admission grants it only a slot beyond the reserve
// kept for live requests and takes it back when a live request would
// otherwise wait.
type admitStage struct{}

func (admitStage) serve(x *exchange) bool {
	c := &x.call
	c.slack = 0
	if x.job != nil {
		c.until, c.latest, c.due = x.rec.start, x.rec.start, time.Time{}
		return true
	}
	c.live = true
	objective := x.pool.sloOf(x.id.class)
	c.until, c.latest, c.slack = deadline(x.r, x.rec.start, objective, x.pool.expectedTTFT(x.rec.start), x.answerSlack())
	c.due = x.rec.start.Add(objectiveOf(x.r, objective) + c.slack) // a non-streamed answer's client waits its slack too
	return true
}

// forwardStage takes a slot (fair queue, fallbacks), then routes and
// forwards the request and relays the answer. A cacheable miss joins a
// flight: identical requests in flight share one upstream call, and only
// its leader is admitted. An answer to the public listener goes through a
// read-ahead writer (x.ra), made here because only this stage's answers
// can use it.
type forwardStage struct{ g *Gateway }

func (s forwardStage) serve(x *exchange) bool {
	if x.job == nil && x.rt.Config.Server.ResponseReadahead >= proxy.MinReadahead {
		x.ra = s.g.readahead.Writer(x.w)
		x.w = x.ra
	}
	if ps := s.g.progressFor(x); ps != nil {
		defer ps.end()
		x.w = ps
	}
	var rl *ratelimit.Result
	if x.limited {
		rl = &x.rl
	}
	vals := x.vals
	if vals == nil { // an exchange made without them (the stage tests)
		vals = new(answerValues)
	}
	if x.call.plan.key != "" && x.rt.flights != nil && s.g.serveCoalesced(x.ctx(), x.w, vals, x.rt, x.pool, &x.call, &x.rec, rl) {
		return false
	}
	s.g.serveDirect(x.ctx(), x.w, vals, x.rt, x.pool, &x.call, &x.rec)
	return false
}
