// Package gateway is the client-facing HTTP handler. An inference request
// reads top to bottom through one chain:
//
//	request id -> read body (bounded) -> peek model/stream/max_tokens ->
//	find the model's pool -> forward (pick, retry, relay) -> record (log, metrics)
//
// Each later stage (auth, rate limit, cache, admission) slots into
// serveInference in that order.
package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/ratelimit"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Options are the gateway's long-lived collaborators.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	// Jobs serves async jobs and the Files and Batches API; nil when the
	// job queue is off or not connected yet (SetJobs installs it later).
	Jobs *batchapi.Handler
	// QueueEnabled: the job queue is configured, so its routes answer 503
	// (not 404) while Jobs is nil.
	QueueEnabled bool
	// AllowPrivateWebhooks lets async jobs name loopback and private
	// addresses as webhooks.
	AllowPrivateWebhooks bool
	// WebhooksSigned: queue.webhook_secret is set. Without it, async
	// requests naming a webhook are refused (nothing would be sent).
	WebhooksSigned bool
	// WorkerToken is the shared secret with which a `sluice worker` may
	// assert the tenant a job runs as (X-Sluice-Worker-Token with
	// X-Sluice-Job-Tenant); empty: no request may.
	WorkerToken string
}

// Gateway serves the OpenAI-compatible API (ServeHTTP) and, on a separate
// listener, the operational endpoints (AdminHandler).
type Gateway struct {
	rt      atomic.Pointer[Runtime]
	log     *slog.Logger
	metrics *telemetry.Metrics
	bodies  *proxy.BodyPool
	// bodyMem bounds the bytes held in request bodies across all
	// connections (server.max_body_memory); it outlives reloads.
	bodyMem     *netguard.Budget
	bodyMetrics *netguard.BodyMetrics
	now         func() time.Time
	promHTTP    http.Handler
	jobs        atomic.Pointer[batchapi.Handler]
	queueOn     bool
	// privateHooks: webhooks may target private addresses.
	privateHooks   bool
	webhooksSigned bool
	workerToken    []byte
	// seed keys request fingerprints (fingerprint); it outlives reloads,
	// as the queues holding appointments do.
	seed maphash.Seed
}

// New builds a gateway serving rt; metrics are registered on opt.Registry.
func New(rt *Runtime, opt Options) *Gateway {
	bodyMem := netguard.NewBudget(int64(rt.Config.Server.MaxBodyMemory))
	g := &Gateway{log: opt.Logger, bodies: proxy.NewBodyPool(bodyMem), bodyMem: bodyMem, now: opt.Now, queueOn: opt.QueueEnabled || opt.Jobs != nil,
		privateHooks: opt.AllowPrivateWebhooks, webhooksSigned: opt.WebhooksSigned, seed: maphash.MakeSeed()}
	if opt.WorkerToken != "" {
		g.workerToken = []byte(opt.WorkerToken)
	}
	if opt.Jobs != nil {
		g.jobs.Store(opt.Jobs)
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.rt.Store(rt)
	g.metrics = telemetry.NewMetrics(opt.Registry)
	g.bodyMetrics = netguard.NewBodyMetrics(opt.Registry, bodyMem)
	opt.Registry.MustRegister(telemetry.NewBackendCollector(g.backendSamples))
	opt.Registry.MustRegister(admission.NewCollector(func() map[string]*admission.Queue { return g.rt.Load().Queues() }))
	g.promHTTP = promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{})
	return g
}

// SetJobs installs the job queue's HTTP layer once the queue is connected.
func (g *Gateway) SetJobs(h *batchapi.Handler) { g.jobs.Store(h) }

// Swap installs a new runtime (config reload). Requests in flight finish on
// the runtime they started with.
func (g *Gateway) Swap(rt *Runtime) {
	g.bodyMem.SetLimit(int64(rt.Config.Server.MaxBodyMemory))
	g.rt.Store(rt)
}

// Runtime returns the current runtime.
func (g *Gateway) Runtime() *Runtime { return g.rt.Load() }

// ServeHTTP is the public listener: /v1/*, /healthz and /readyz, nothing
// else (the privileged surfaces are on AdminHandler). It routes by path: a
// switch, not a router; the set is small and this runs on every request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every body, whoever reads it (inference, file uploads), arrives
	// within the body timeouts or is cut with 408.
	sc := g.rt.Load().Config.Server
	restore := netguard.TimeBody(w, r, netguard.BodyTimeouts{Gap: sc.BodyReadTimeout.D(), Total: sc.BodyTotalTimeout.D()}, g.now, g.bodyMetrics)
	defer restore()
	// Every write moves the connection's write deadline, also on routes
	// with small answers: a keep-alive connection must not carry an
	// earlier request's deadline into this one.
	w = newSendWriter(w, sc.SendTimeout.D(), g.metrics.SendTimeouts)
	switch path := r.URL.Path; path {
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		g.serveInference(w, r)
	case "/v1/models":
		g.serveModels(w, r)
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	case "/readyz":
		g.serveReady(w, r)
	default:
		if strings.HasPrefix(path, "/v1/models/") {
			g.serveModel(w, r, strings.TrimPrefix(path, "/v1/models/"))
			return
		}
		if g.queueOn && batchapi.IsRoute(path) {
			g.serveJobsAPI(w, r)
			return
		}
		writeError(w, openai.NotFound("unknown_url", "Unknown request URL: "+r.Method+" "+path))
	}
}

// prefixKeyChars is how much of the prompt prefix_affinity hashes: about
// the system prompt and first turns, what a backend's prefix cache shares.
const prefixKeyChars = 2048

// serveInference is the request's path through the gateway.
func (g *Gateway) serveInference(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	rt := g.rt.Load()
	reqID := requestID(r)
	w.Header().Set("X-Request-Id", reqID)
	rec := record{id: reqID, path: r.URL.Path, start: start}
	defer g.finish(&rec)

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rec.fail(w, &openai.Error{Status: http.StatusMethodNotAllowed, Type: openai.TypeInvalidRequest,
			Code: "method_not_allowed", Message: "use POST for " + r.URL.Path})
		return
	}
	g.metrics.Inflight.Inc()
	defer g.metrics.Inflight.Dec()
	from := rt.tenants.realIP.client(r)
	ip := from.addr
	job := jobCallFrom(r.Context()) // set when a queued job runs through here
	if job == nil {
		// ... or by a `sluice worker`, which asserts the job's tenant.
		var err *openai.Error
		if job, err = g.workerJob(r); err != nil {
			rec.fail(w, err)
			return
		}
	}
	var id identity
	if job != nil {
		id, rec.job = job.id, true
	} else {
		var authErr *openai.Error
		if id, authErr = rt.tenants.identify(r, ip); authErr != nil {
			rec.fail(w, authErr)
			return
		}
	}
	rec.tenant = id.tenant
	ctl, herr := readControlHeaders(r.Header)
	if herr != nil {
		rec.fail(w, herr)
		return
	}

	body, err := g.bodies.ReadBody(r.Body, r.ContentLength, int64(rt.Config.MaxBodyBytes))
	if err != nil {
		switch {
		case errors.Is(err, proxy.ErrBodyTooLarge):
			g.bodyMetrics.Refused(netguard.RefusedTooLarge)
			refuseRestOfBody(w, r)
		case errors.Is(err, proxy.ErrBodyMemory):
			g.bodyMetrics.Refused(netguard.RefusedMemory)
			refuseRestOfBody(w, r)
		case errors.Is(err, netguard.ErrBodyTimeout):
		default:
			err = fmt.Errorf("%w: %w", errReadBody, err)
			rec.cause = err // the client's fault: the detail goes on the access line only
		}
		rec.fail(w, apiError(err, ""))
		return
	}
	defer body.Release()

	parsed, err := rt.parse(body.Bytes())
	if err != nil {
		rec.fail(w, apiError(err, "")) // an *openai.Error naming the field
		return
	}
	peek := parsed.Peek
	rec.model, rec.stream = peek.Model, peek.Stream
	if peek.Model == "" {
		e := openai.BadRequest("missing_model", "you must provide a model parameter")
		e.Param = "model"
		rec.fail(w, e)
		return
	}
	pool := rt.Pools[peek.Model]
	if pool == nil {
		e := openai.NotFound("model_not_found", "The model '"+peek.Model+"' does not exist or you do not have access to it.")
		e.Param = "model"
		rec.fail(w, e)
		return
	}

	// Async: Prefer: respond-async queues the request as a job (202 and
	// /v1/jobs/{id}) to run when the pool has spare capacity. It is charged
	// when it runs, not here (see docs/RELIABILITY.md, "Jobs and webhooks").
	if job == nil && ctl.async {
		rec.status = g.acceptAsync(w, r, body.Bytes(), peek, id)
		return
	}

	// Rate limits: requests and estimated tokens per key / tenant / IP /
	// global. A job is charged here, when it runs, to its tenant (and the
	// global limit): its key and address are the submitter's, long gone.
	cost := admission.EstimateCost(len(body.Bytes()), peek.MaxTokens, rt.Config.Admission.DefaultMaxTokens)
	limited := rt.limits != nil
	var rl ratelimit.Result
	if limited {
		key := id.key
		if key == "" {
			// Anonymous: per_key limits apply per client address, so a
			// caller cannot dodge them by sending no key or inventing one.
			key = id.tenant
		}
		subject := ratelimit.Subject{Key: key, Tenant: id.tenant, IP: ip}
		if job != nil {
			subject = ratelimit.Subject{Tenant: id.tenant}
		}
		if rl, err = rt.rateLimit(r.Context(), w, subject, cost, start); err != nil {
			if job != nil {
				job.throttled = true
			}
			rec.fail(w, apiError(err, peek.Model))
			return
		}
	}
	defer func() {
		if limited && rec.result.UsageKnown { // settle the token reservation with what was used
			u := rec.result.Usage
			rl.Reconcile(context.WithoutCancel(r.Context()), int64(u.PromptTokens+u.CompletionTokens), g.now())
		}
	}()

	// Cache: deterministic requests may be answered without a backend.
	call := upstreamCall{path: r.URL.Path, rawQuery: r.URL.RawQuery, header: r.Header, body: body, peek: peek,
		id: id, cost: cost, reqID: reqID, ip: ip, forwardedFor: from.forwardedFor, fingerprint: g.fingerprint(id.tenant, r.URL.Path, body.Bytes())}
	plan, hit, hitStatus, stale := rt.cacheLookup(r.Context(), w, r, body.Bytes(), parsed, pool, id, start)
	call.plan = plan
	if hit {
		rec.status, rec.cache = hitStatus, "HIT"
		if stale {
			rec.cache = "STALE"
			g.revalidate(r.Context(), rt, pool, &call)
		}
		return
	}

	// Admission, then the backend: wait for a fair share of the pool's
	// capacity (or of a fallback's), or be refused at once with
	// Retry-After. Identical cacheable requests share one upstream call.
	call.until, call.latest = deadline(r, start, pool.sloOf(id.class), pool.expectedTTFT(start))
	if job != nil {
		call.until, call.latest = start, start // a job takes a free slot at once or goes back to the queue
	}
	if plan.key != "" && rt.flights != nil && g.serveCoalesced(r.Context(), w, rt, pool, &call, &rec) {
		return
	}
	g.serveDirect(r.Context(), w, rt, pool, &call, &rec)
}

// fingerprint identifies a request across a client's retries (same tenant,
// path and body) for the queue's appointments: a client refused with
// Retry-After that sends the same request back at the advised time is
// served ahead of newer arrivals (admission/appoint.go).
func (g *Gateway) fingerprint(tenant, path string, body []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.WriteString(path)
	h.WriteByte(0)
	h.Write(body)
	return h.Sum64() | 1 // never 0, which means "none"
}

// requestID keeps a sane client-supplied X-Request-Id (so a client can trace
// its own call through) or makes a new one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	var b [16]byte
	lo, hi := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i], b[8+i] = byte(lo>>(8*i)), byte(hi>>(8*i))
	}
	var text [32]byte // encoded here: one allocation, the string
	hex.Encode(text[:], b[:])
	return string(text[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// refuseRestOfBody closes the connection after an answer sent while the
// body is still arriving, and lingers so the client reads the answer
// instead of a reset (nginx does the same after a 413).
func refuseRestOfBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	netguard.LingerOnClose(r.Context())
}
