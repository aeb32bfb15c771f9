package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// record gathers what the access log and the metrics need about a request.
type record struct {
	id, method, path, model string
	tenant                  string
	userAgent               string // the request's User-Agent, for the access line
	// client is the client address after trusted-proxy handling
	// (client.addr), for the access line.
	client string
	served string // fallback model that served, if any
	queued time.Duration
	cache  string // HIT when answered from the cache
	jobID  string // the job an async submission queued (enqueueStage)
	// sent counts the response body bytes written to the client (its
	// sendWriter, or a job's answerSink); nil for a sink that counts
	// none. Read once the answer is over: after a read-ahead's drain
	// (Gateway.record).
	sent   bytesCounter
	stream bool
	job    bool // a queued job run by a worker
	// retry: the return of a refused request still awaited (demandStage):
	// its refusal is that request's again (scaling.Meter.Refused).
	retry   bool
	start   time.Time
	status  int
	errCode string
	// cause is the full internal error behind a failure, for the log only.
	cause error
	// ctx is the request's context: its cause tells a client that left
	// from a request the gateway's shutdown cut (fail).
	ctx    context.Context
	result proxy.Result
	// flightSettles: a flight's leader that left before its answer ended
	// has its token reservation settled by the flight (handSettle), not
	// by settle.
	flightSettles bool
	// modelIn is a runtime whose pools have model (the parse stage's),
	// so that observe's check of the label is a pointer compare.
	modelIn *Runtime
}

// fail answers the client with e (unless it left) and notes the error. A
// request cancelled by the gateway's shutdown (its grace over, or a second
// signal) is answered 503 shutting_down, not taken for a client that
// left: the client is there, and may retry on another replica. One a
// reload cut because it removed the request's API key (keyRequests) is
// answered 401 api_key_revoked, as the key's next request is.
func (rec *record) fail(w http.ResponseWriter, e *openai.Error) {
	if e.Status == 499 && rec.ctx != nil {
		switch cause := context.Cause(rec.ctx); {
		case errors.Is(cause, proxy.ErrShuttingDown):
			e = apiError(proxy.ErrShuttingDown, rec.model)
		case errors.Is(cause, proxy.ErrKeyRevoked):
			e = apiError(proxy.ErrKeyRevoked, rec.model)
			w.Header().Set("WWW-Authenticate", challengeInvalid)
			w.Header().Set("Connection", "close") // its holder's next request is refused: nothing to keep it for
		}
	}
	rec.status, rec.errCode = e.Status, e.Code
	if e.Cause != nil {
		rec.cause = e.Cause
	}
	if e.Status != 499 {
		writeError(w, e)
	}
}

// finish writes the access line and updates the metrics. It runs on every
// request, so each part below does only what its output needs.
func (g *Gateway) finish(rec *record) {
	res := &rec.result
	rt := g.rt.Load()
	level := accessLevel(rec)
	// The access line only when its level is logged (--log-level error
	// filters it); the duration is read from the clock only when something
	// reports it: the duration histogram (an answer relayed) or that line.
	logged := rt.Config.Log.Access && g.log.Enabled(context.Background(), level)
	var dur time.Duration
	if res.Written || logged {
		dur = g.now().Sub(rec.start)
	}
	backend := ""
	if res.Backend != nil {
		backend = res.Backend.Name()
	}
	g.observe(rt, rec, backend, dur)
	if rec.cause != nil || res.Err != nil { // logCause's own test, without a call per request
		g.logCause(rec)
	}
	if res.ForeignError != "" {
		g.logForeignError(rec, backend)
	}
	if !logged {
		return // before building the attributes: this runs on every request
	}
	if backend == "" && rec.status >= 400 && !g.refusalLogged(rt) {
		return
	}
	g.logAccess(rec, level, backend, dur)
}

// refusalLogged reports whether the access line of a request the gateway
// refused itself (a 4xx or 5xx with no backend involved) may be written,
// log.access_refused_per_second lines a second. Lines of requests a
// backend worked on are bounded by the pools' capacity; refusals by
// nothing but the network, so a flood of junk would write the log as fast
// as it arrives and rotate every useful line out (telemetry.LineBudget).
// The first line of a second after one that held lines back says how
// many; sluice_log_access_lines_suppressed_total counts each. The
// metrics still count every request.
func (g *Gateway) refusalLogged(rt *Runtime) bool {
	ok, prev := g.refusedLines.Allow(g.now(), rt.Config.Log.AccessRefusedPerSecond)
	if prev > 0 {
		g.log.LogAttrs(context.Background(), slog.LevelWarn, "access lines of refused requests not written",
			slog.Int64("suppressed", prev), slog.Int("access_refused_per_second", rt.Config.Log.AccessRefusedPerSecond))
	}
	if !ok {
		g.linesSuppressed.Inc()
	}
	return ok
}

// RefusalLineAllowed reports whether one more line of an answer the
// gateway made without a backend may be written, within
// log.access_refused_per_second (refusalLogged): the public listener asks
// it for the answers it makes itself (netguard.Listener.LogRefusals), so
// that a flood of connections over the cap is bounded, counted and summed
// up as a flood of refused requests is.
func (g *Gateway) RefusalLineAllowed() bool { return g.refusalLogged(g.rt.Load()) }

// observe updates the request's metrics: counts, errors, refusals,
// latencies, retries, hedges and tokens.
func (g *Gateway) observe(rt *Runtime, rec *record, backend string, dur time.Duration) {
	res := &rec.result
	model := rec.model
	if rec.modelIn != rt {
		if _, ok := rt.Pools[model]; !ok {
			model = "" // keep label cardinality bounded by the config
		}
	}
	g.series.requests.get(requestLabels{model: model, backend: backend, status: codeOf(rec.status)}).Inc()
	g.tally.finished(model, rec.errCode)
	if rec.errCode != "" || refusedForCapacity(rec.status) || res.Written || res.UsageKnown || res.Retries > 0 || res.Hedge != proxy.HedgeNone {
		g.observeMore(rec, model, dur)
	}
}

// observeMore is observe for a request that failed, was refused, or was
// relayed or retried: apart, so that observe's code for a request with
// none of these (every cache hit) spans fewer lines (docs/BENCHMARKS.md
// §9 Step 4i).
func (g *Gateway) observeMore(rec *record, model string, dur time.Duration) {
	res := &rec.result
	if rec.errCode != "" {
		g.metrics.Errors.WithLabelValues(model, rec.errCode).Inc()
	}
	if refusedForCapacity(rec.status) { // the rest of refused's test, without a call per request
		g.refused(model, rec)
	}
	var ms *modelSeries
	if res.Written || res.UsageKnown {
		ms = g.series.models.get(model)
	}
	if res.Written {
		ms.ttft.Observe(res.TTFB.Seconds())
		ms.duration.Observe(dur.Seconds())
	}
	if res.Retries > 0 {
		g.metrics.Retries.WithLabelValues(model).Add(float64(res.Retries))
	}
	if res.Hedge != proxy.HedgeNone {
		g.countHedge(model, res.Hedge)
	}
	if res.UsageKnown {
		ms.tokensIn.Add(float64(res.Usage.PromptTokens))
		ms.tokensOut.Add(float64(res.Usage.CompletionTokens))
	}
}

// accessLevel is the level of the request's access line.
func accessLevel(rec *record) slog.Level {
	switch {
	case rec.job && (refusedForCapacity(rec.status) || rec.status == 499):
		return slog.LevelDebug // a job finding no room, or preempted, goes back to the queue: routine
	case rec.status >= 500:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// logCause logs an unexpected error in full whatever the access log says:
// the client saw only a generic message and the request id.
func (g *Gateway) logCause(rec *record) {
	res := &rec.result
	cause := rec.cause
	if cause == nil && res.Written && res.Err != nil && !errors.Is(res.Err, context.Canceled) {
		cause = res.Err // a stream cut short: the client got a generic in-band event
	}
	if cause != nil && (rec.status >= 500 || res.Written) {
		attrs := []slog.Attr{slog.String("request_id", rec.id),
			slog.String("path", telemetry.Clip(rec.path)), slog.String("model", telemetry.Clip(rec.model)),
			slog.Int("status", rec.status), slog.String("cause", telemetry.NetCause(cause, 0)),
			slog.String("detail", telemetry.Clip(cause.Error()))}
		if res.Backend != nil {
			// the last backend tried: a cause such as a TLS refusal
			// (unknown authority, a client certificate refused) is its
			attrs = append(attrs, slog.String("backend", res.Backend.Name()))
		}
		g.log.LogAttrs(context.Background(), slog.LevelError, "request failed", attrs...)
	}
}

// logForeignError logs what a backend's error answer held when it was
// not JSON (an HTML page, plain text) and the client got an OpenAI error
// object naming the request id instead (proxy.Result.ForeignError; a
// coalesced follower's is the leader's note, its object names its own
// id), whatever the access log says: the client was told to look here.
// The status is the one the client got (a follower's result has none).
func (g *Gateway) logForeignError(rec *record, backend string) {
	g.log.LogAttrs(context.Background(), slog.LevelWarn, foreignErrorMsg,
		slog.String("request_id", rec.id), slog.String("path", telemetry.Clip(rec.path)),
		slog.String("backend", backend), slog.Int("status", rec.status),
		slog.String("body", telemetry.Clip(rec.result.ForeignError)))
}

// foreignErrorMsg is the message of logForeignError's line (a
// follow-up's too).
const foreignErrorMsg = "backend error answer was not JSON; the client got an OpenAI error object"

// logAccess writes the request's access line at level.
func (g *Gateway) logAccess(rec *record, level slog.Level, backend string, dur time.Duration) {
	res := &rec.result
	attrs := make([]slog.Attr, 0, 23)
	var sent int64
	if rec.sent != nil {
		sent = rec.sent.bytesSent()
	}
	attrs = accessCore(attrs, rec.id, rec.method, rec.path, rec.status, dur, sent, rec.client, rec.userAgent)
	attrs = append(attrs,
		slog.String("model", telemetry.Clip(rec.model)), // client-chosen strings: telemetry.Clip
		slog.Bool("stream", rec.stream),
		slog.String("backend", backend),
		slog.String("tenant", telemetry.Clip(rec.tenant)),
		slog.Float64("queued_ms", float64(rec.queued.Microseconds())/1000),
		slog.Int("attempts", res.Attempts),
	)
	// A time to first byte only when an answer was sent (the ttft metric's
	// test too): a refusal's 0 would read as an instant first token.
	if res.Written {
		attrs = append(attrs, slog.Float64("ttft_ms", float64(res.TTFB.Microseconds())/1000))
	}
	// Tokens only when the answer reported them: a refusal, a cache hit,
	// a duration-billed transcription, a moderation or a stream without
	// usage has no count, and a 0 would read as "used none" (the metrics
	// and the token limit treat it as unknown too).
	if res.UsageKnown {
		attrs = append(attrs, slog.Int("tokens_in", res.Usage.PromptTokens), slog.Int("tokens_out", res.Usage.CompletionTokens))
	}
	if h := hedgeName(res.Hedge); h != "" {
		attrs = append(attrs, slog.String("hedge", h))
	}
	if rec.cache != "" {
		attrs = append(attrs, slog.String("cache", rec.cache))
	}
	if rec.served != "" {
		attrs = append(attrs, slog.String("served_by_model", rec.served))
	}
	if rec.jobID != "" {
		attrs = append(attrs, slog.String("job", rec.jobID))
	}
	if rec.errCode != "" {
		attrs = append(attrs, slog.String("error", rec.errCode))
		switch {
		case rec.cause != nil && rec.status < 500:
			attrs = append(attrs, slog.String("cause", telemetry.Clip(rec.cause.Error())))
		case rec.cause == nil && !res.Written && errors.Is(res.Err, proxy.ErrConnect):
			// A backend not reached (upstream_unreachable) is answered
			// with a code alone and is no unexpected error, so logCause
			// writes nothing (but for TLS); the code says the kind, this
			// what to fix: refused, no such host, a dial timeout, in a
			// few stable words; Go's text, with the address, in detail.
			attrs = append(attrs, slog.String("cause", telemetry.NetCause(res.Err, 0)),
				slog.String("detail", telemetry.Clip(res.Err.Error())))
		}
	} else if res.Err != nil {
		// An answer cut after its head: the code, as a refusal's line
		// has (client_closed_request, upstream_idle_timeout,
		// upstream_error), not Go's text ("context canceled",
		// "unexpected EOF"); an unexpected cause is in logCause's
		// "request failed" line.
		attrs = append(attrs, slog.String("error", apiError(res.Err, "").Code))
	}
	g.log.LogAttrs(context.Background(), level, "request", attrs...)
}

// logRoute writes the access line of a request answered outside the
// inference chain (the model list, the Files and Batch API, an unknown
// URL), which records none of its own: nginx logs every request, and an
// operator looking up the id a client quotes, or counting a scanner's
// 404s, must find it. The probes (/healthz, /readyz) are not logged: a
// line per kubelet probe says nothing. Method, path, status and duration:
// these routes have no model, backend or tokens.
func (g *Gateway) logRoute(r *http.Request, w *sendWriter, start time.Time, memo *atomic.Value) {
	status := w.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	rt := g.rt.Load()
	if !rt.Config.Log.Access || !g.log.Enabled(context.Background(), level) {
		return
	}
	if status >= 400 && !g.refusalLogged(rt) {
		return
	}
	var attrs [8]slog.Attr
	g.log.LogAttrs(context.Background(), level, "request", accessCore(attrs[:0], w.Header().Get(headerRequestID),
		r.Method, r.URL.Path, status, g.now().Sub(start), w.sent, rt.tenants.client(r, memo).addr, userAgent(r))...)
}

// accessCore appends the fields every access line starts with, in this
// order and under these names, whatever the route: request_id, method,
// path, status, duration_ms, bytes_sent, client and user_agent. duration_ms runs to
// the answer's last byte written (nginx's $request_time, Envoy's
// %DURATION%); bytes_sent is the response body bytes the client was
// written (nginx's $body_bytes_sent: a 499's or a cut stream's are what
// got out, so a short answer shows); client is the client's address as the
// gateway believes it (behind auth.trusted_proxies, the forwarded one;
// nginx's $remote_addr with real_ip); user_agent is the request's
// User-Agent header ("" without one; nginx's $http_user_agent in its
// combined format), which tells an SDK, a scanner or a probe apart.
// Client-chosen strings are clipped (telemetry.Clip: 512 bytes) and
// escaped by the JSON handler.
func accessCore(dst []slog.Attr, id, method, path string, status int, dur time.Duration, sent int64, client, ua string) []slog.Attr {
	return append(dst,
		slog.String("request_id", id),
		slog.String("method", telemetry.Clip(method)),
		slog.String("path", telemetry.Clip(path)),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(dur.Microseconds())/1000),
		slog.Int64("bytes_sent", sent),
		slog.String("client", client),
		slog.String("user_agent", telemetry.Clip(ua)))
}

// userAgent is r's User-Agent header, read without canonicalising the
// name (the map's key is canonical already).
func userAgent(r *http.Request) string {
	if v := r.Header["User-Agent"]; len(v) > 0 {
		return v[0]
	}
	return ""
}
