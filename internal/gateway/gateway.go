// Package gateway is the request pipeline. An inference request, from the
// public listener or a queued job, runs through one chain of stages, each a
// small type with one method (chain.go):
//
//	identify -> parse -> enqueue -> limit -> cache -> admit -> forward -> record
//
// Any stage may answer (a refusal, a cache hit) and end the chain; record
// runs whichever did.
package gateway

import (
	"context"
	"hash/maphash"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/batchapi"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/discovery"
	"github.com/sluice-gw/sluice/internal/httpdate"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Options are the gateway's long-lived collaborators.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the gateway's clock; nil is time.Now, which then also stands
	// for the wall clock that socket deadlines need (stampDate).
	Now func() time.Time
	// Jobs serves async jobs and the Files and Batches API; nil when the
	// job queue is off or not connected yet (SetJobs installs it later).
	Jobs *batchapi.Handler
	// QueueEnabled: the job queue is configured, so its routes answer 503
	// (not 404) while Jobs is nil.
	QueueEnabled bool
	// Queue says where the job queue lives: on /status (passwords
	// hidden) and, for separate workers, at QueuePath.
	Queue QueueInfo
	// AllowPrivateWebhooks lets async jobs name loopback and private
	// addresses as webhooks.
	AllowPrivateWebhooks bool
	// WebhooksSigned: queue.webhook_secret is set. Without it, async
	// requests naming a webhook are refused (nothing would be sent).
	WebhooksSigned bool
	// ProgressTicker paces queue progress comments (progress.go); nil:
	// time.NewTicker.
	ProgressTicker Ticker
	// Arrivals counts live requests for the traffic forecast (demand.go);
	// nil: not counted.
	Arrivals Arrivals
	// Forecast predicts each model's arrival rate at now+ForecastLead for
	// the scaling signals (scaling.Policy); nil: the measured rate alone.
	// ForecastLead 0: the running config's scaling.lead.
	Forecast     scaling.DemandForecast
	ForecastLead time.Duration
	// Meter measures demand and service for the scaling signals; nil: a
	// new one. internal/app passes one it restored the measured service
	// rates into, and saves them from, with the forecast snapshot.
	Meter *scaling.Meter
	// ForecastView shows the forecast against actual arrivals on /status
	// (forecast_status.go); nil: forecasting is off, /status says null.
	ForecastView ForecastView
	// ConfigStatus is /status's "config" (configstatus.go); nil: absent
	// (a gateway built without a config file to reload).
	ConfigStatus func() ConfigStatus
	// Discovery is a model's discovery state on /readyz and /status
	// (discoverystatus.go; discovery.Manager.State); nil, or false for a
	// model: absent.
	Discovery func(model string) (discovery.State, bool)
	// CacheRedisDown reports whether the response cache's Redis level is
	// bypassed now (cache.LazyRedis.Degraded), for /status's "redis";
	// nil: the cache has no Redis level.
	CacheRedisDown func() bool
	// StatusTicker paces /status/stream's events (stream.go); nil:
	// time.NewTicker.
	StatusTicker Ticker
	// ResponseIDs and ResponseIDTTL bound the Responses API ids the
	// gateway remembers with their backend (respowners.go); 0: 100,000
	// ids, a day.
	ResponseIDs   int
	ResponseIDTTL time.Duration
	// ResponseIDsRedis, when not nil, is the Redis through which replicas
	// share those ids (respredis.go); its writer runs until Close.
	ResponseIDsRedis *ResponseIDsRedis
	// BodyMemory bounds the bytes held in request bodies
	// (server.max_body_memory; Swap sets its limit on reload), and
	// BodyMetrics counts them; nil: the gateway makes its own. internal/app
	// passes the ones it gives the Batch API too, whose uploads' line
	// buffers draw from the same budget.
	BodyMemory  *netguard.Budget
	BodyMetrics *netguard.BodyMetrics
}

// Gateway serves the OpenAI-compatible API (ServeHTTP) and, on a separate
// listener, the operational endpoints (AdminHandler).
type Gateway struct {
	rt      atomic.Pointer[Runtime]
	log     *slog.Logger
	metrics *telemetry.Metrics
	series  *series // metrics' children resolved once (series.go)
	bodies  *proxy.BodyPool
	// bodyMem bounds the bytes held in request bodies across all
	// connections (server.max_body_memory); it outlives reloads.
	bodyMem     *netguard.Budget
	bodyMetrics *netguard.BodyMetrics
	now         func() time.Time
	wall        bool // now is the wall clock (Options.Now nil)
	// dates is the Date of the current second for answers the chain
	// writes itself (date.go); it outlives reloads.
	dates    httpdate.Cache
	promHTTP http.Handler
	jobs     atomic.Pointer[batchapi.Handler]
	// workers are the separate workers' job requests running on the
	// admin listener (workerdrain.go).
	workers   workerRuns
	queueOn   bool
	queueInfo QueueInfo // where the job queue lives (Options.Queue)
	// jobAnswerMax bounds a job's answer held in memory by the job entry
	// (answerSink): jobs.DefaultMaxAnswerBytes, as a separate worker's.
	jobAnswerMax int64
	// privateHooks: webhooks may target private addresses.
	privateHooks   bool
	webhooksSigned bool
	// seed keys request fingerprints (fingerprint); it outlives reloads,
	// as the queues holding appointments do.
	seed maphash.Seed
	// stages are the inference chain (chain.go), built once.
	stages []stage
	// exchanges recycles the per-request state of the chain.
	exchanges sync.Pool

	// readahead buffers answers ahead of slow clients, its bytes bounded
	// by readaheadMem (server.max_readahead_memory); both outlive reloads.
	readahead    *proxy.Readahead
	readaheadMem *netguard.Budget
	// progress paces queue progress comments (Options.ProgressTicker).
	progress Ticker
	// authFailures counts refused credentials by reason
	// (sluice_auth_failures_total).
	authFailures *prometheus.CounterVec
	// refusedLines bounds the access lines of requests refused without a
	// backend (log.access_refused_per_second); linesSuppressed counts
	// those it held back.
	refusedLines    *telemetry.LineBudget
	linesSuppressed prometheus.Counter
	// arrivals: Options.Arrivals.
	arrivals Arrivals
	// meter measures demand and service for the scaling signals
	// (scaling.go); it outlives reloads. forecast and forecastLead are
	// Options.Forecast and ForecastLead.
	meter          *scaling.Meter
	hold           *scaling.Hold // scaling.scale_in_hold over desired backends
	forecast       scaling.DemandForecast
	forecastLead   time.Duration
	forecastView   ForecastView
	configStatus   func() ConfigStatus                        // Options.ConfigStatus
	discovery      func(model string) (discovery.State, bool) // Options.Discovery
	cacheRedisDown func() bool                                // Options.CacheRedisDown
	// tally counts requests and errors per model for /status (tally.go).
	tally tally
	// streams are the /status/stream watchers (stream.go).
	streams  *statusStreams
	jobQueue atomic.Pointer[JobQueueStatus]
	// jobStoreFault is the embedded job store's disk fault (SetJobStoreFault).
	jobStoreFault atomic.Pointer[func() error]
	// revocations is the job store's record of revoked tenants
	// (SetRevocations, revokerecord.go).
	revocations atomic.Pointer[Revocations]
	// revokeGen counts the reloads that revoked a tenant (revokesweep.go).
	revokeGen atomic.Uint64
	backlog   backlogMemo
	// owners are the Responses API ids relayed and their backends
	// (respowners.go); followUps counts their follow-ups (responses.go);
	// lookups bounds what asking the backends for ids nobody holds costs
	// each tenant (probebudget.go).
	owners    *respOwners
	followUps followUpMetrics
	lookups   *probeBudget
	// keyReqs are the requests running under each API key, ended when a
	// reload removes it (revoke.go).
	keyReqs keyRequests
	// lost are the tenants a reload left without a key, whose queued jobs
	// are refused (revoke.go).
	lost lostTenants
}

// New builds a gateway serving rt; metrics are registered on opt.Registry.
func New(rt *Runtime, opt Options) *Gateway {
	bodyMem := opt.BodyMemory
	if bodyMem == nil {
		bodyMem = netguard.NewBudget(int64(rt.Config.Server.MaxBodyMemory))
	}
	g := &Gateway{log: opt.Logger, bodies: proxy.NewBodyPool(bodyMem), bodyMem: bodyMem, now: opt.Now, queueOn: opt.QueueEnabled || opt.Jobs != nil,
		privateHooks: opt.AllowPrivateWebhooks, webhooksSigned: opt.WebhooksSigned, seed: maphash.MakeSeed(), progress: opt.ProgressTicker,
		arrivals: opt.Arrivals, queueInfo: opt.Queue,
		meter: opt.Meter, hold: scaling.NewHold(), forecast: opt.Forecast, forecastLead: opt.ForecastLead,
		forecastView: opt.ForecastView, configStatus: opt.ConfigStatus, discovery: opt.Discovery,
		cacheRedisDown: opt.CacheRedisDown}
	if g.meter == nil {
		g.meter = scaling.NewMeter(rt.Config.Scaling.Window.D())
	} else {
		g.meter.SetWindow(rt.Config.Scaling.Window.D())
	}
	if opt.Jobs != nil {
		g.jobs.Store(opt.Jobs)
	}
	if g.now == nil {
		g.now, g.wall = time.Now, true
	}
	g.jobAnswerMax = jobs.DefaultMaxAnswerBytes
	g.rt.Store(rt)
	g.streams = newStatusStreams(opt.StatusTicker)
	g.stages = g.chain()
	g.metrics = telemetry.NewMetrics(opt.Registry)
	g.series = newSeries(g.metrics)
	g.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_auth_failures_total",
		Help: "Refused credentials by reason: invalid_api_key, or why a bearer JWT was refused (oversized, malformed, " +
			"algorithm, unknown_kid, keys_unavailable, signature, expired, not_yet_valid, issuer, audience, claims). " +
			"The client is told none of it."}, []string{"reason"})
	g.refusedLines = telemetry.NewLineBudget()
	g.linesSuppressed = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_log_access_lines_suppressed_total",
		Help: "Access lines not written: requests refused without a backend, and the public listener's own answers (connections over the cap, malformed heads), past log.access_refused_per_second in a second."})
	opt.Registry.MustRegister(g.authFailures, keySetCollector{g}, g.linesSuppressed)
	g.bodyMetrics = opt.BodyMetrics
	if g.bodyMetrics == nil {
		g.bodyMetrics = netguard.NewBodyMetrics(opt.Registry, bodyMem)
	}
	g.readaheadMem = netguard.NewBudget(int64(rt.Config.Server.MaxReadaheadMemory))
	g.readahead = proxy.NewReadahead(g.bodies, g.readaheadMem, proxy.NewReadaheadMetrics(opt.Registry, g.readaheadMem))
	opt.Registry.MustRegister(telemetry.NewBackendCollector(g.backendSamples))
	opt.Registry.MustRegister(admission.NewCollector(func() map[string]*admission.Queue { return g.rt.Load().Queues() }))
	opt.Registry.MustRegister(scaling.NewCollector(g.signals))
	g.owners = newRespOwners(opt.Registry, g.log, opt.ResponseIDs, opt.ResponseIDTTL, g.now, opt.ResponseIDsRedis)
	g.followUps = newFollowUpMetrics(opt.Registry)
	g.lookups = newProbeBudget(opt.Registry, probeRate, probeBurst, maxProbeTenants)
	g.registerStreamMetrics(opt.Registry)
	// A scraper that stops reading is cut (netguard.StallCut), not left
	// holding an admin connection slot and a goroutine.
	g.promHTTP = netguard.StallCut(promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{}), netguard.AdminSendTimeout)
	return g
}

// Close stops what New started beside the runtime: the writer of the
// Responses ids to Redis (after its last writes, within its timeout) and
// its connection. Call it once requests are done; idempotent.
func (g *Gateway) Close() { g.owners.close() }

// SetJobs installs the job queue's HTTP layer once the queue is connected.
func (g *Gateway) SetJobs(h *batchapi.Handler) { g.jobs.Store(h) }

// JobQueueStatus reads the job queue's backlog for /status (jobs.Store's
// Backlog).
type JobQueueStatus func(ctx context.Context) (jobs.Backlog, error)

// SetJobQueue installs the job queue's backlog reader once the queue is
// connected.
func (g *Gateway) SetJobQueue(f JobQueueStatus) { g.jobQueue.Store(&f) }

// SetJobStoreFault installs the embedded job store's disk fault reader
// (jobs.Store.DiskFault): no round trip, so /readyz can say it.
func (g *Gateway) SetJobStoreFault(f func() error) { g.jobStoreFault.Store(&f) }

// Swap installs a new runtime (config reload), built aside and handed the
// state it takes over by internal/app: one atomic store makes it serve.
// Requests in flight finish on the runtime they started with.
func (g *Gateway) Swap(rt *Runtime) {
	g.bodyMem.SetLimit(int64(rt.Config.Server.MaxBodyMemory))
	g.readaheadMem.SetLimit(int64(rt.Config.Server.MaxReadaheadMemory))
	g.meter.SetWindow(rt.Config.Scaling.Window.D())
	prev := g.rt.Swap(rt)
	// After the store: a request identified on prev that registers from
	// now on sees rt itself (trackKey).
	if keys, tokens := g.keyReqs.cut(rt.tenants); keys+tokens > 0 && g.log != nil {
		g.log.Warn("config reload: requests of removed API keys and of token issuers no longer trusted ended (api_key_revoked)",
			"requests", keys+tokens, "key_requests", keys, "token_requests", tokens)
	}
	if prev != nil {
		n, fromTokens := g.lost.update(prev.tenants, rt.tenants)
		if n > 0 && g.log != nil {
			g.log.Warn("config reload: tenants left without an API key: their queued jobs and batches end unrun (api_key_revoked)", "tenants", n)
		}
		if n > 0 || fromTokens > 0 {
			g.revokeGen.Add(1) // the app's revocation sweep looks (RevocationGen)
		}
		if fromTokens > 0 && g.log != nil {
			g.log.Warn("config reload: token tenants left without an issuer (a removed issuer's namespace, or a shared_tenants pattern no issuer shares now): their queued jobs and batches end unrun (api_key_revoked)",
				"namespaces", fromTokens)
		}
		// Requests still running on prev pick from rt's pools from now
		// on (Pool.successor).
		for model, p := range prev.Pools {
			if next := rt.Pools[model]; next != nil {
				p.succeed(next)
			}
		}
	}
	g.meter.Keep(func(model string) bool { return rt.Pools[model] != nil })
	g.hold.Keep(func(model string) bool { return rt.Pools[model] != nil })
	backends := make(map[string]bool)
	for _, b := range rt.Backends() {
		backends[b.Name()] = true
	}
	served := func(model string) bool { return rt.Pools[model] != nil }
	g.series.prune(served, func(backend string) bool { return backends[backend] })
	g.tally.keep(served)
}

// Runtime returns the current runtime.
func (g *Gateway) Runtime() *Runtime { return g.rt.Load() }

// ServeHTTP is the public listener: /v1/*, /healthz and /readyz, nothing
// else (the privileged surfaces are on AdminHandler). Behind netguard.Guard
// it is entered through ServeFramed.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.ServeFramed(w, r, netguard.Arrival{BodyReceived: netguard.BodyReceived(r)})
}

// The gateway is told of the connection by netguard.Guard, not looking it
// up again.
var _ netguard.Framed = (*Gateway)(nil)

// ServeFramed is ServeHTTP for a request whose arrival Guard tells
// (netguard.Framed): whether its body is in, and its connection's memo
// (connMemo).
// It routes by path: a switch, not a router; the set is small and this
// runs on every request.
func (g *Gateway) ServeFramed(w http.ResponseWriter, r *http.Request, a netguard.Arrival) {
	start := g.now()
	gd := g.guard(w, r, start, a.BodyReceived, a.Spare)
	defer gd.body.Restore()
	if r.Close && r.ContentLength != 0 {
		defer lingerUnreadBody(r)
	}
	w = &gd.sendWriter
	switch r.URL.Path {
	case "/v1/chat/completions", "/v1/completions", pathEmbeddings, pathResponses:
		g.handle(w, r, nil, openai.EndpointNone, start, &gd.vals, connMemo(r, a), gd.exchangeSlot(a))
	default:
		g.serveRoute(w, r, a, start, gd)
	}
	// Kept for the connection's next request (newGuarded), gd lets go of
	// this one's: net/http's writer holds its *http.Request and header
	// maps, the body's bounds the request too (Restore has its own). Held,
	// an idle keep-alive connection kept ~2.4 KiB more heap (branch
	// review40). The header values (vals) stay: net/http writes the head
	// from them after this returns.
	gd.sendWriter.ResponseWriter, gd.sendWriter.conn, gd.body = nil, nil, nil
}

// serveRoute is ServeFramed for every path but the chat family's and the
// Responses API's: apart, so that the function an inference request (a
// cache hit) runs spans only its own code lines (docs/BENCHMARKS.md §9
// Step 4i).
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, a netguard.Arrival, start time.Time, gd *guarded) {
	switch path := r.URL.Path; path {
	case "/v1/models":
		setRequestID(w, r)
		if g.modelsAllowed(w, r, connMemo(r, a)) {
			g.serveModels(w, r)
		}
		g.logRoute(r, &gd.sendWriter, start, connMemo(r, a))
	case "/healthz":
		if probeMethod(w, r) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("ok\n"))
		}
	case "/readyz":
		if probeMethod(w, r) {
			g.serveReady(w, r)
		}
	default:
		if g.queueOn && batchapi.IsRoute(path) {
			g.serveJobsAPI(w, r) // sets its own X-Request-Id
			g.logRoute(r, &gd.sendWriter, start, connMemo(r, a))
			return
		}
		if ep := openai.EndpointOf(path); ep != openai.EndpointNone { // rerank, tokenize, ...: endpoints.go
			g.handle(w, r, nil, ep, start, &gd.vals, connMemo(r, a), gd.exchangeSlot(a))
			return
		}
		if strings.HasPrefix(path, pathResponses+"/") {
			// It sets its own X-Request-Id and logs what it serves; a route,
			// method or id it refuses first is logged here.
			if !g.serveFollowUp(w, r, start, connMemo(r, a)) {
				g.logRoute(r, &gd.sendWriter, start, connMemo(r, a))
			}
			return
		}
		setRequestID(w, r)
		defer g.logRoute(r, &gd.sendWriter, start, connMemo(r, a))
		if strings.HasPrefix(path, "/v1/models/") {
			if g.modelsAllowed(w, r, connMemo(r, a)) {
				g.serveModel(w, r, strings.TrimPrefix(path, "/v1/models/"))
			}
			return
		}
		if path == "" {
			path = r.RequestURI // CONNECT's authority form names no path
		}
		writeError(w, openai.NotFound("unknown_url", "Unknown request URL: "+openai.Echo(r.Method+" "+path)+v1Hint(path)))
	}
}

// connMemo is the netguard.ConnMemo of r's connection: as Guard found it
// (a.Memo), else in r's context.
func connMemo(r *http.Request, a netguard.Arrival) *atomic.Value {
	if a.Memo == nil {
		return netguard.ConnMemo(r.Context())
	}
	return a.Memo
}

// guard puts the connection's time bounds on a request: every body,
// whoever reads it (inference, file uploads), arrives within the body
// timeouts or is cut with 408; every write moves the connection's write
// deadline, also on routes with small answers, so a keep-alive connection
// does not carry an earlier request's deadline into this one. The body's
// budgets start at start (g.now(), just read); a body the listener has
// read whole already (bodyReceived: netguard.BodyReceived) needs none; such a request
// also gets the Date of start for an answer the chain writes before
// admission (stampDate): it is written within the request's own CPU time
// of start, while a body still arriving may take its whole timeout. The caller answers
// through &gd.sendWriter and calls gd.body.Restore when the handler
// returns, which undoes the body deadlines. spare is the connection's
// netguard.Arrival.Spare (nil: none): gd is the one its last request had.
func (g *Gateway) guard(w http.ResponseWriter, r *http.Request, start time.Time, bodyReceived bool, spare *any) (gd *guarded) {
	sc := &g.rt.Load().Config.Server
	gd = newGuarded(spare)
	gd.sendWriter.init(w, sc.SendTimeout.D(), g.metrics.SendTimeouts)
	// A body the listener has read whole already (a small request arrives
	// in the read that ends the idle wait) is in the server's buffer:
	// reading or discarding it never waits on the client, so time bounds
	// could not fire; setting them would cost an allocation, a clock read
	// and two deadline moves per request.
	if !bodyReceived {
		g.timeBody(gd, w, r, sc, start)
		return gd
	}
	gd.vals.date = g.dates.At(start)
	if g.wall {
		gd.vals.send, gd.vals.start = &gd.sendWriter, start
	}
	return gd
}

// timeBody puts the body bounds on a request whose body is still
// arriving (guard): apart, so that guard's code for a small request (every
// cache hit) spans fewer lines (docs/BENCHMARKS.md §9 Step 4i).
func (g *Gateway) timeBody(gd *guarded, w http.ResponseWriter, r *http.Request, sc *config.Server, start time.Time) {
	gd.body = new(netguard.TimedBody)
	gd.body.StartAt(w, r, netguard.BodyTimeouts{Gap: sc.BodyReadTimeout.D(), Total: sc.BodyTotalTimeout.D(),
		Discard: netguard.Discard{Bytes: int64(sc.Discard.MaxBytes), Gap: sc.Discard.ReadTimeout.D(), Total: sc.Discard.TotalTimeout.D()}}, start, g.now, g.bodyMetrics)
}

// newGuarded is a zero guarded: the one spare holds (netguard.Arrival.Spare:
// the connection's last HTTP/1.x request's, free once its handler has
// returned), cleared, else a new one, kept in spare for the connection's
// next request: a hit allocates 288 bytes and runs ~250 instructions
// fewer (docs/BENCHMARKS.md §9 Step 9a); the slot goes with the
// connection.
func newGuarded(spare *any) *guarded {
	if spare == nil {
		return new(guarded)
	}
	if gd, ok := (*spare).(*guarded); ok {
		x := gd.x // cleared by its request's release
		*gd = guarded{}
		gd.x = x
		return gd
	}
	gd := new(guarded)
	*spare = gd
	return gd
}

// guarded is what a request from a listener needs for its whole life, in
// one allocation: its send bound and, for a body still arriving, its body
// bounds (guard), and the values of the answer headers the chain sets.
type guarded struct {
	sendWriter
	body *netguard.TimedBody // nil: the body had arrived whole (guard)
	vals answerValues
	// x is the exchange the connection's inference requests run in
	// (exchangeSlot), kept with gd by newGuarded: no pool's Get and Put
	// per request.
	x *exchange
}

// exchangeSlot is where handle keeps an exchange for the connection's
// next request: gd's, when gd itself is kept for it (a.Spare), else nil
// (the exchange goes back to the pool).
func (gd *guarded) exchangeSlot(a netguard.Arrival) **exchange {
	if a.Spare == nil {
		return nil
	}
	return &gd.x
}

// answerValues back the answer header values the chain sets on every
// request (X-Request-Id) and on every cache hit (Age, Cache-Control), so
// that setting them allocates nothing. net/http reads the header map after
// the handler has returned (a small answer's head is written then), so
// they live in guarded, never in the recycled exchange: a guarded is
// reused only by its connection's next HTTP/1.x request (newGuarded),
// which net/http reads after it has written this one's answer.
type answerValues struct {
	id, age, cc [1]string
	// model and queued back X-Sluice-Model and X-Sluice-Queue-Time, set on
	// every answer that passed the cache (upstream.go).
	model, queued [1]string
	// date is the Date of the request's arrival (httpdate.Cache), nil when the
	// chain's answers keep net/http's own (guard).
	date []string
	// send, with date and the wall clock, is the request's sendWriter, whose
	// deadline a dated answer starts at start, the arrival (stampDate).
	send  *sendWriter
	start time.Time
}

// prefixKeyChars is how much of the prompt prefix_affinity hashes: about
// the system prompt and first turns, what a backend's prefix cache shares.
const prefixKeyChars = 2048

// fingerprint identifies a request across a client's retries (same tenant,
// path and body) for the queue's appointments: a client refused with
// Retry-After that sends the same request back at the advised time is
// served ahead of newer arrivals (admission/appoint.go).
func (g *Gateway) fingerprint(tenant, path string, body ...[]byte) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.WriteString(path)
	h.WriteByte(0)
	for _, b := range body { // an audio form kept in blocks: the same hash as whole
		h.Write(b)
	}
	return h.Sum64() | 1 // never 0, which means "none"
}

// requestID keeps a sane client-supplied X-Request-Id (so a client can trace
// its own call through) or makes a new one.
func requestID(r *http.Request) string { return saneRequestID(headerGet(r.Header, headerRequestID)) }

// probeMethod is openai.ReadOnly for the probes' routes: a method other
// than GET or HEAD is answered 405 with a request id. Their answers to GET
// carry none: a probe never quotes one, and it would be made on every
// probe.
func probeMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	setRequestID(w, r)
	return openai.ReadOnly(w, r)
}

// setRequestID answers r with its request id (requestID) on a route
// outside the inference chain, which sets its own.
func setRequestID(w http.ResponseWriter, r *http.Request) {
	w.Header()[headerRequestID] = []string{requestID(r)}
}

// saneRequestID is id, a client's X-Request-Id ("" when none), if sane,
// else a new one.
func saneRequestID(id string) string {
	if saneID(id) {
		return id
	}
	return openai.NewRequestID()
}

// saneID reports whether a client's X-Request-Id, id, is kept as the
// request's (saneRequestID).
func saneID(id string) bool { return id != "" && len(id) <= 128 && printable(id) }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// lingerUnreadBody has the close linger when a client that asked for
// Connection: close sent a body this request's answer left unread (an
// unknown URL, a 405, a refusal before the body is read). net/http drains
// an unread body only on a connection it keeps; on one it closes, the
// client's bytes still in flight would make the kernel reset the
// connection, and the client could lose the answer.
func lingerUnreadBody(r *http.Request) {
	if !netguard.BodyReceived(r) {
		netguard.LingerOnClose(r.Context())
	}
}

// refuseRestOfBody closes the connection after an answer sent while the
// body is still arriving, and lingers so the client reads the answer
// instead of a reset (nginx does the same after a 413).
func refuseRestOfBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	netguard.LingerOnClose(r.Context())
}
