package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
	"github.com/sluice-gw/sluice/internal/routing"
)

// upstreamCall is an admitted-or-not inference request on its way to a
// backend, past the stages that may answer it without one.
type upstreamCall struct {
	path, rawQuery string
	header         http.Header
	body           *proxy.Body
	peek           openai.Peek
	id             identity
	cost           float64
	kvNeed         float64       // the tenant ramp's KV need (admission.Request.KVNeed); 0: cost
	until, latest  time.Time     // admission deadline; when a waiter is refused (see deadline)
	due            time.Time     // when the client's objective wants the first token (admission.Request.Due); zero: none
	slack          time.Duration // how much longer than a stream it may wait (answerSlack; admission.Request.Slack)
	fingerprint    uint64        // for appointments; 0 = none
	reqID, ip      string
	forwardedFor   string // X-Forwarded-For for the backend (clientip.go)
	plan           cachePlan
	progress       *progressStream // X-Sluice-Progress asked and honoured; nil: no reports
	slotWaited     slotWaitOutcome // set by forward (saturated.go)
	queued         time.Duration   // its wait in the admission queue, once granted
	// live: a client waits for this call (not a queued job), so it is
	// demand the scaling signals count (scaling.go).
	live bool
	// retry: the return of a refused request (demandStage), no new demand.
	retry bool
	// anyShape: a flight's call, which takes the answer as the backend
	// shapes it (proxy.Request.AnyShape).
	anyShape bool
	// pin names the backend that made the response a Responses API call
	// continues (previous_response_id): picked first (responses.go).
	pin string
	// pinFor is the previous_response_id pin holds (the error naming it
	// when pin has left the pool: previousLeft); "" when pin is "".
	pinFor string
	// keepID: a Responses API call whose response the backend stores, so
	// its id is remembered (responses.go); one not stored has no
	// follow-ups. The backend keeps something of it, so it is tried on a
	// second backend only when the first did not take it
	// (proxy.Request.SideEffects).
	keepID bool
	// cpuOnly: a tokenizer request (/tokenize, /detokenize), which takes
	// no admission ticket (rt.admit). The admission queue meters the
	// engine: its capacity is the sum of the backends' concurrency limits
	// and its cost unit the tokens a request prefills and decodes. A
	// tokenizer request runs on the server's API process (vLLM answers it
	// from the tokenizer, on the CPU) and never enters the engine's batch:
	// queued behind generation it would wait seconds for a slot it does
	// not use, and its ticket would keep a generation request out. It is
	// still identified, rate-limited (as a request) and routed to a
	// backend of its model by the pool's policy, but takes no engine slot
	// there either (max_concurrency and the adaptive limit count the
	// engine's batch): a CPU-side slot instead (endpoint.CPUSlots). With
	// every backend's CPU-side slots taken it is refused pool_saturated at
	// once (no slot wait): engine slots freeing would not help it.
	cpuOnly bool
	// ep: the model-addressed endpoint called (openai.EndpointNone for
	// the chat family and the Responses API), whose answers report usage
	// in their own shapes (proxy.Request.Endpoint).
	ep openai.ModelEndpoint
	// countText: a stream charged to a token limit: its relay counts the
	// events carrying generated text, which settle the charge when no
	// usage arrives (the client asked for none, or the backend ignored
	// stream_options.include_usage; record, proxy.Request.CountText).
	countText bool
	// budget: a counted stream whose request set no max_tokens asks its
	// token limits for more as it generates, and is cut when they refuse
	// (streamBudget); nil for every other call.
	budget proxy.TokenBudget
	// ticket: the call's admission ticket, told the stream's first token
	// (proxy.Request.Started): the tenant ramp grows its base on a prompt
	// start of a grant above it; and, by its owner after Forward, how the
	// request ended (Ticket.Ended): a request that does not stream is a
	// ramp completion only for a whole 2xx answer. nil: none (a tokenizer
	// call).
	ticket *admission.Ticket
	// metered: the answer's usage settles a token limit: asked
	// uncompressed so it can be read (proxy.Request.Metered).
	metered bool
	// handsBody: the call's body is its handler's own reference, nothing
	// after the call reads more of it than its length (record, settle),
	// so the relay releases it once the stream is under way
	// (proxy.Request.ReleaseBody): serveDirect's calls. Not a flight's:
	// its leader and followers keep their own references, which a
	// follower (or a leader answered in the other shape) may still need
	// to send its request alone (serveCoalesced, goAlone).
	handsBody bool
	// fwd and sel are forward's request to the proxy and its selector,
	// kept here rather than in forward's frame (~700 bytes under every
	// held stream's wait, where the h1 client's read of the answer's head
	// then grew the stack past 8 KiB: BenchmarkHeldStreamStack).
	fwd proxy.Request
	sel selector
}

// forward sends the call to a backend of served and relays the answer to w.
// A cacheable call's answer is asked unencoded and carries its
// Cache-Control.
func (rt *Runtime) forward(ctx context.Context, w http.ResponseWriter, served *Pool, c *upstreamCall, capture *proxy.Capture) proxy.Result {
	rt.prepareForward(ctx, served, c, capture)
	defer func() { c.slotWaited = c.sel.waited }()
	return rt.forwarder.Forward(ctx, w, &c.fwd, &c.sel)
}

// prepareForward sets c.fwd and c.sel for forward, in a frame of its own
// that has returned before the relay runs.
//
//go:noinline
func (rt *Runtime) prepareForward(ctx context.Context, served *Pool, c *upstreamCall, capture *proxy.Capture) {
	c.sel = selector{pool: served, req: routing.Request{Model: served.Model, Work: c.cost, CPU: c.cpuOnly},
		ctx: ctx, slotWait: rt.slotWait(served, c)}
	if c.peek.API == openai.APIResponses {
		rt.responsesSelector(&c.sel, served, c)
	} else if routing.UsesPrefixKey(served.Policy) { // the prompt decode is paid only where it is used
		c.sel.req.PrefixKey = openai.PrefixKey(c.body.Bytes(), prefixKeyChars)
	}
	c.fwd = proxy.Request{
		Path: c.path, RawQuery: c.rawQuery, Header: c.header, Body: c.body,
		Peek: c.peek, ServeModel: served.Model, RequestID: c.reqID, ForwardedFor: c.forwardedFor, Capture: capture,
		Work: int64(c.cost), PromptTokens: c.promptTokens(), KVNeed: c.kvNeedTokens(), Shared: c.plan.key != "", CacheControl: c.plan.leadCC, AnyShape: c.anyShape, CPUOnly: c.cpuOnly, Endpoint: c.ep, CountText: c.countText, Budget: c.budget, Metered: c.metered,
		SideEffects: c.keepID || c.peek.Store, ReleaseBody: c.handsBody,
		FirstToken: rt.firstTokenBound(served, c), HedgeAfter: rt.hedgeAfter(served, c), HedgeSlot: served.hedgeSlot,
		Started: c.started(),
	}
}

// promptTokens is the call's proxy.Request.PromptTokens: its body's bytes
// / 4, the prompt part of its queue cost; 0 without a body.
func (c *upstreamCall) promptTokens() int64 {
	if c.body == nil {
		return 0
	}
	return int64(admission.EstimateCost(int(c.body.Len()), 0, 0))
}

// kvNeedTokens is the call's proxy.Request.KVNeed: its KV need, or its
// cost when it has none (as the tenant ramp's need, admission.Request.KVNeed).
func (c *upstreamCall) kvNeedTokens() int64 {
	if c.kvNeed > 0 {
		return int64(min(c.kvNeed, c.cost))
	}
	return int64(c.cost)
}

// started is the call's proxy.Request.Started: its ticket; nil without
// one (never a nil *Ticket in the interface).
func (c *upstreamCall) started() proxy.Starter {
	if c.ticket == nil {
		return nil
	}
	return c.ticket
}

// firstTokenBound is how long a streaming call may wait for its first
// token: timeouts.first_token_factor times its class's objective on the
// serving pool (0 = only timeouts.first_byte applies). Non-streaming calls
// get no such bound: their first byte is the whole answer.
func (rt *Runtime) firstTokenBound(served *Pool, c *upstreamCall) time.Duration {
	f := rt.Config.Timeouts.FirstTokenFactor
	if !c.peek.Stream || f <= 0 {
		return 0
	}
	return time.Duration(f * float64(served.sloOf(c.id.class)))
}

// capture returns a response copy for the cache when the call is cacheable,
// bounded by cache.max_entry and counted in the buffered-bytes gauge.
func (rt *Runtime) capture(c *upstreamCall) *proxy.Capture {
	if c.plan.key == "" {
		return nil
	}
	m := rt.cacheMetrics
	return &proxy.Capture{Limit: int(rt.Config.Cache.MaxEntry), Held: func(d int) { m.Buffered(cache.BufferCapture, d) }}
}

// fillFromCapture stores the captured answer and releases the copy.
func (rt *Runtime) fillFromCapture(ctx context.Context, c *upstreamCall, header http.Header, res *proxy.Result, capture *proxy.Capture, now time.Time) {
	if capture == nil {
		return
	}
	if capture.Over {
		rt.cacheMetrics.CaptureAbandoned()
	} else {
		rt.cacheFill(ctx, c.plan, header, res, capture.Buf.Bytes(), now)
	}
	capture.Release()
}

// serveDirect admits the call (a fair wait, or a refusal at once with
// Retry-After) and forwards it, on the client's own goroutine. vals back
// the answer's header values (answerValues).
func (g *Gateway) serveDirect(ctx context.Context, w http.ResponseWriter, vals *answerValues, rt *Runtime, pool *Pool, c *upstreamCall, rec *record) {
	g.arrived(pool, c)
	served, ticket, err := rt.admit(ctx, pool, c.id, c)
	if err != nil {
		if waited, ok := queueTimeOf(err); ok {
			rec.queued = waited // the access line's queued_ms, as the header
			setQueueTime(w, vals, waited)
		}
		rec.fail(w, apiError(err, c.peek.Model))
		return
	}
	defer ticket.Release()
	rec.queued = ticket.Waited()
	c.queued, c.ticket = rec.queued, ticket
	if ticket != nil {
		setQueueTime(w, vals, rec.queued)
		g.waited(served, c, rec)
	}
	if served != pool {
		rec.served = served.Model
	}
	vals.model[0] = served.Model
	w.Header()["X-Sluice-Model"] = vals.model[:]
	if served != pool {
		c.plan = cachePlan{} // a fallback's answer is not the asked model's to cache
	}
	capture := rt.capture(c)
	if ra := readaheadOf(w); ra != nil {
		// The answer is read ahead of a slow client, so the backend, the
		// ticket and the usage are settled when the backend finishes.
		ra.Arm(int(rt.Config.Server.ResponseReadahead))
	}
	c.handsBody = true // rec.result.BodyReleased tells record (chain.go)
	res := rt.forward(ctx, w, served, c, capture)
	ticket.Ended(res.Outcome()) // a ramp completion only for a whole 2xx answer
	g.countSlotWait(served.Model, c.slotWaited)
	g.served(served, &res)
	if c.keepID && res.ResponseID != "" {
		g.rememberResponse(rt, c, &res)
	}
	if capture != nil { // the detached context and the clock read only for a cache fill
		rt.fillFromCapture(context.WithoutCancel(ctx), c, w.Header(), &res, capture, g.now())
	}
	rec.result = res
	if res.Err != nil && !res.Written {
		rec.fail(w, failedPoolRetry(apiError(res.Err, c.peek.Model), g.now(), served.Backends))
		return
	}
	rec.status = res.Status
}

// readaheadOf is the response's read-ahead writer, also under a writer
// wrapped around it (the progress writer of X-Sluice-Progress, which
// writes its comments before admission, straight through the unarmed
// read-ahead, and everything after through it in order); nil without one.
func readaheadOf(w http.ResponseWriter) *proxy.ReadaheadWriter {
	for {
		switch x := w.(type) {
		case *proxy.ReadaheadWriter:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// serveCoalesced answers a cacheable miss through a flight shared with
// identical requests in flight. It returns false when the caller must send
// the request on its own (the flight it joined ended without an answer for
// it); it has then written nothing. vals back the answer's header values.
// rl is the request's rate limit charge (nil: none): a follower is
// charged no tokens (Gateway.settle), and its headers say so.
func (g *Gateway) serveCoalesced(ctx context.Context, w http.ResponseWriter, vals *answerValues, rt *Runtime, pool *Pool, c *upstreamCall, rec *record, rl *ratelimit.Result) bool {
	f, leader := rt.flights.join(c.flightKey(), false, rt.flightOpts(c))
	defer rt.flights.leave(f)
	xcache := "COALESCED"
	var r *reader
	served := pool // the leader's: the pool its call went to
	if leader {
		xcache = "MISS"
		g.arrived(pool, c)
		var ticket *admission.Ticket
		var err error
		served, ticket, err = rt.admit(ctx, pool, c.id, c)
		if err != nil {
			rt.flights.abort(f, err)
			if waited, ok := queueTimeOf(err); ok {
				rec.queued = waited
				setQueueTime(w, vals, waited)
			}
			rec.fail(w, apiError(err, c.peek.Model))
			return true
		}
		rec.queued = ticket.Waited()
		c.queued = rec.queued
		if ticket != nil {
			setQueueTime(w, vals, rec.queued)
			g.waited(served, c, rec)
		}
		if served != pool {
			rec.served = served.Model
		}
		r = f.register()
		g.startUpstream(ctx, rt, f, served, ticket, c)
	}
	tokens := !leader && rl != nil && rl.ChargesTokens()
	if tokens {
		rl.Settled(0).WriteHeaders(w.Header())
	}
	status, out := f.relay(ctx, w, r, c.peek, c.id.tenant, c.reqID, xcache, c.plan.cc)
	if leader {
		f.mu.Lock()
		rec.result = f.res
		rec.flightSettles = !f.done && g.handSettle(ctx, f, c, rl)
		f.mu.Unlock()
	}
	switch out {
	case relayed:
		rec.status = status
		if !leader {
			rec.cache = "COALESCED"
			// Logged under this follower's id, which its wrapped
			// error object names (Gateway.logForeignError).
			rec.result.ForeignError = f.foreignNoteOf(status)
		}
	case gone:
		rec.fail(w, apiError(context.Canceled, c.peek.Model))
	case detached:
		// Mid-answer: the status is sent, so the honest signal is a
		// connection closed before the body's end.
		rec.status, rec.errCode = status, "client_detached"
		abortResponse(w)
	case goAlone:
		f.mu.Lock()
		err := f.err
		if err == nil && f.done && !f.over {
			err = f.res.Err // the answer came but broke off: nothing to convert
		}
		f.mu.Unlock()
		if !leader || err == nil {
			// A follower, or a leader whose answer came in the other shape
			// and too large to convert: its own request serves it.
			if tokens { // and is charged as one
				rl.WriteHeaders(w.Header())
			}
			return false
		}
		rec.fail(w, failedPoolRetry(apiError(err, c.peek.Model), g.now(), served.Backends))
	}
	return true
}

// flightKey is the flight c joins. A stream whose client asked for no
// usage (stream_options.include_usage) gets a backend answer without it,
// which can answer neither a JSON request (OpenAI's always carries
// "usage") nor a stream asking for it; and an answer with usage would
// hand such a stream a usage chunk it did not ask for. So those streams
// share flights with each other only, and the requests that want usage
// (JSON, or a stream with include_usage) with each other: a burst of
// both makes two backend calls, never one per request.
//
// A stream with a token budget (a stream without max_tokens under a token
// limit, streamBudget) shares flights only with requests taking from the
// same token limits: the flight's one upstream call steps its leader's
// budget and is cut when the leader's limits refuse, a cut each client
// gets. Clients of the same limits would each have been refused there
// (sooner, each paying its own steps); another key's (or tenant's) answer
// must not end because this one's ran out, nor may a client with a small
// limit get a long answer for nothing by following one with room. The
// answer varies with who asks, so who asks is part of its key, as a cache
// keys what a response varies by (Vary).
func (c *upstreamCall) flightKey() string {
	key := c.plan.key
	if c.peek.Stream && !c.peek.IncludeUsage {
		key += "\x00no-usage"
	}
	if b, ok := c.budget.(*streamBudget); ok {
		key += "\x00tokens:" + b.rl.TokenScope()
	}
	return key
}

// flightOpts bounds a flight led by c: cache.max_entry bytes, a lagging
// client detached after server.send_timeout.
func (rt *Runtime) flightOpts(c *upstreamCall) flightOpts {
	return flightOpts{limit: int(rt.Config.Cache.MaxEntry), lagGrace: rt.Config.Server.SendTimeout.D(), tenant: c.id.tenant}
}

// startUpstream sends the flight's one upstream request. The flight's
// goroutine owns the ticket and a reference to the body from here on.
func (g *Gateway) startUpstream(ctx context.Context, rt *Runtime, f *flight, served *Pool, ticket *admission.Ticket, c *upstreamCall) {
	c.body.Retain()
	call := *c
	call.header = c.header.Clone() // the client's request may be gone before the upstream call ends
	call.anyShape = true           // the flight answers each client in its shape (relayConverted)
	call.handsBody = false         // the flight's reference is released below, at its end
	call.ticket = ticket
	rt.flights.start(ctx, f, func(ctx context.Context, w http.ResponseWriter) proxy.Result {
		defer call.body.Release()
		defer ticket.Release()
		w.Header()["X-Sluice-Model"] = []string{served.Model}
		// The flight's buffer is the capture: the answer is held once.
		res := rt.forward(ctx, w, served, &call, nil)
		ticket.Ended(res.Outcome()) // a ramp completion only for a whole 2xx answer
		g.countSlotWait(served.Model, call.slotWaited)
		g.served(served, &res)
		if served.Model != call.peek.Model {
			return res // a fallback's answer is not the asked model's to cache
		}
		f.mu.Lock()
		var raw []byte
		if !f.over {
			raw = f.buf.bytes()
		}
		f.mu.Unlock()
		rt.cacheFill(context.WithoutCancel(ctx), call.plan, w.Header(), &res, raw, g.now())
		return res
	})
}

// freshInL1 is the response cache's check that a key was just refreshed
// (cache.Tiered.FreshInL1).
type freshInL1 interface {
	FreshInL1(key string, now time.Time) bool
}

// revalidate refreshes a stale entry in the background, once per key and
// only when the pool has room at once: in the batch class and with a
// deadline already due, it never makes a live request wait.
func (g *Gateway) revalidate(ctx context.Context, rt *Runtime, pool *Pool, c *upstreamCall) {
	if rt.flights == nil || rt.flights.inFlight(c.flightKey()) {
		return
	}
	f, leader := rt.flights.join(c.flightKey(), true, rt.flightOpts(c))
	if !leader {
		rt.flights.leave(f)
		return
	}
	// The stale entry was read before this flight began. A refresh that
	// ended in between (its fill is stored before it leaves the flight
	// table) has made the key fresh: a second one would call the backend
	// for an answer already there. Its followers, if any, go alone.
	if l1, ok := rt.cache.(freshInL1); ok && l1.FreshInL1(c.plan.key, g.now()) {
		rt.flights.abort(f, nil)
		return
	}
	ctx = context.WithoutCancel(ctx)
	if c.plan.cc == "" { // a hit's plan: its followers' answers carry the fresh Cache-Control
		rt.fillPlan(&c.plan)
	}
	id := c.id
	id.class, id.fallback = admission.Batch, false
	bg := *c // in the batch class, at once or not at all, with no appointment
	bg.until, bg.latest, bg.due, bg.fingerprint, bg.live, bg.slack = g.now(), time.Time{}, time.Time{}, 0, false, 0
	served, ticket, err := rt.admit(ctx, pool, id, &bg)
	if err != nil {
		rt.flights.abort(f, err)
		return
	}
	g.startUpstream(ctx, rt, f, served, ticket, c)
}
