// Package app builds the gateway and owns its lifecycle: the runtime built
// from a config (Build: backends, breakers, adaptive limits, queues, rate
// limiter, forwarder), the HTTP server, the active health checker, config
// reloads as transactions (SIGHUP and file changes: build aside, commit,
// swap) and graceful shutdown. Every goroutine started here stops when
// Run's context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/discovery"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/tlsterm"
)

// App is one gateway process.
type App struct {
	src  Source         // the config file, re-read on reload, and what overrides it
	resp *responseCache // the response cache's levels, closed by Run
	// jobs is the job queue: nil when queue.enabled is false, or while an
	// external NATS is unreachable (Run keeps trying); closed by Run.
	jobs      *jobQueue
	jobsMu    sync.Mutex
	jobsRetry func() (*jobQueue, error) // set when the queue must still be connected
	closing   bool                      // guarded by jobsMu: Run is shutting down
	log       *slog.Logger
	queueInfo gateway.QueueInfo // where the job queue lives; fixed at New
	deps      Deps
	gw        *gateway.Gateway

	// queueGivenUp is set when closeQueue gave the queue's stop up past
	// its bound (queueCloseBound): Run then returns ErrStopNotClean.
	queueGivenUp atomic.Bool
	// queueBound is the bound closeQueue gave the queue's stop (ns).
	queueBound atomic.Int64
	// stopDue, guarded by jobsMu, is when a shutdown's drain and cut are
	// due to have ended: the first signal + shutdown_grace + cutBound
	// (shutdown sets it; zero before). queueCloseBound gives the queue's
	// stop what is left of it.
	stopDue time.Time
	// queueStopBase is queueCloseBound's base: queueStopBound (New), zero
	// read as that; a test asserting a clean stop on a loaded machine
	// gives it room (roomToStop).
	queueStopBase time.Duration
	// cutWait is what the cut gives the requests, the workers' jobs and
	// the in-process jobs still running when the drain ends to answer
	// (cutFor): cutBound (New), zero read as that. The drain tests give
	// it a minute, a hang guard: under load a cancelled handler did not
	// write its 503 within 2 s of wall clock and its client saw EOF
	// (RELIABILITY "drain cut's wall clock").
	cutWait time.Duration
	// queueStart is the queue section the job queue was opened with (or
	// is being connected with): what a reload cannot change under it.
	queueStart config.Queue
	// batchHooks, guarded by jobsMu, are queue.batch_webhooks as the last
	// reload applied them (nil: as at start), for a queue connected after
	// that reload (connectQueue).
	batchHooks *[]jobs.BatchEndpoint
	// built is the runtime serving, with what the next build takes over
	// from it; replaced by Reload under reloadMu.
	built *Built
	// adminLn is the admin listener (admin.listen), opened by ListenAdmin
	// or by Run; nil when admin.listen is "off".
	adminMu sync.Mutex
	adminLn net.Listener
	// adminCaps is adminLn wrapped in its connection cap while Run serves
	// it (serveAdmin), for a reload to change the cap (applyAdminLimits).
	adminCaps *netguard.Listener

	connMetrics *netguard.ConnMetrics
	connMu      sync.Mutex
	conns       *netguard.Listener // set while Run serves; reloads change its caps
	// tls terminates TLS on the client listener (tls:), nil when off;
	// reloads hand it the pair they read.
	tls *tlsterm.Terminator
	// baseMemLimit is the runtime's soft memory limit before Run applied
	// server.memory_limit (GOMEMLIMIT or none); restored when Run ends
	// or a reload sets the limit back to 0. Guarded by connMu.
	baseMemLimit int64
	// gc keeps the heap goal at or above a floor while Run serves (nil
	// when GOGC is set); guarded by connMu.
	gc *gcFloor

	// ticker paces the loops that run only while there is work
	// (whileBusy): time.NewTicker outside tests.
	ticker gateway.Ticker
	// revokeTicker paces the revocation sweep (revokesweep.go), woken on
	// revokeWake by a reload that revokes: realTicker outside tests.
	revokeTicker gateway.Ticker
	revokeWake   chan struct{}
	// timer arms the one-shot waits of the drains (a removed backend's
	// grace, the retired TLS transports'): realTimer outside tests.
	timer timer

	// reloads count reloads applied and refused (reloadmetrics.go).
	reloads *reloadMetrics

	releaseOnce sync.Once
	cut         drainCut   // a second signal: see Cut
	reloadMu    sync.Mutex // serialises reloads
	checkMu     sync.Mutex
	checkCfg    config.Active
	checkEnd    context.CancelFunc
	checkWG     sync.WaitGroup
	// probesDiscounted counts the active probes each checker counted
	// neither way for the gateway's own stall
	// (sluice_health_probes_discounted_total); it outlives the checkers.
	probesDiscounted *prometheus.CounterVec

	// disc runs the models' discovery sources (Run starts them, reloads
	// sync them); drains are the removed backends still finishing.
	disc   *discovery.Manager
	drains drains
	// retiring are the retired runtimes not joined yet (retire.go).
	retiring retiring
	// discovering is set while Run runs the sources (guarded by
	// reloadMu): a reload before Run starts none.
	discovering bool

	// forecast is the traffic forecaster (forecast.enabled, the default);
	// nil when off.
	forecast *forecastRun

	scrapeMu  sync.Mutex
	scrapeCfg config.LoadMetrics
	scrapeEnd context.CancelFunc
	scrapeWG  sync.WaitGroup
}

// New builds the app from a validated config, read from src (src.Path ""
// disables file reloads).
func New(cfg *config.Config, src Source, logger *slog.Logger) (*App, error) {
	return newWithClock(cfg, src, logger, nil)
}

// newWithClock is New with the clock the gateway, its pools and the
// forecaster read (tests inject time); nil is the wall clock.
func newWithClock(cfg *config.Config, src Source, logger *slog.Logger, now func() time.Time) (*App, error) {
	path := src.Path
	logConfigWarnings(logger, cfg)
	wall := now == nil
	if wall {
		now = time.Now
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.LogMetrics != nil {
		reg.MustRegister(src.LogMetrics)
	}
	deps := Deps{
		Logger:     logger,
		Registry:   reg,
		Transport:  proxy.NewTransportCache(),
		Redis:      redisconn.NewClients(logger, reg),
		Background: gateway.NewBackground(),
		Now:        now,
		Stalls:     endpoint.NewStallWatch(endpoint.StallBeat),
		Rand:       routing.NewRand(uint64(time.Now().UnixNano())),
		Rings:      &routing.RingStats{},
		QueueWork:  make(chan struct{}, 1),
		Ejections:  make(chan struct{}, 1),
	}
	term, err := newTerminator(cfg.TLS)
	if err != nil {
		return nil, errWithPath(path, err)
	}
	resp, err := newResponseCache(cfg.Cache, reg, deps.Now, deps.Redis, logger)
	if err != nil {
		return nil, errWithPath(path, err)
	}
	deps.Cache, deps.CacheMetrics, deps.CacheMemo = resp.level, resp.metrics, resp.memo
	disc := discovery.NewManager(reg, logger, deps.Now)
	deps.Discovered = disc.Set
	built, err := Build(cfg, deps, nil)
	if err != nil {
		resp.Close()
		return nil, errWithPath(path, err)
	}
	built.Commit()
	a := &App{src: src, log: logger, deps: deps, resp: resp, built: built, disc: disc, connMetrics: netguard.NewConnMetrics(reg), ticker: realTicker, timer: realTimer, tls: term,
		queueStopBase: queueStopBound, cutWait: cutBound}
	a.probesDiscounted = newProbesDiscounted(reg)
	a.cut.ch = make(chan struct{})
	a.revokeTicker, a.revokeWake = realTicker, make(chan struct{}, 1)
	a.drains.ctx, a.drains.cancel = context.WithCancel(context.Background())
	// One request body budget for the gateway and the Batch API's uploads.
	bodyMem := netguard.NewBudget(int64(cfg.Server.MaxBodyMemory))
	gwOpts := gateway.Options{Logger: logger, Registry: reg, Now: deps.Now,
		BodyMemory: bodyMem, BodyMetrics: netguard.NewBodyMetrics(reg, bodyMem),
		QueueEnabled: cfg.Queue.Enabled, AllowPrivateWebhooks: cfg.Queue.AllowPrivateWebhooks,
		WebhooksSigned: cfg.Queue.WebhookSecret != "", ResponseIDsRedis: responseIDsRedis(cfg, deps.Redis)}
	if wall {
		gwOpts.Now = nil // the gateway then knows its clock is the sockets' (gateway.Options.Now)
	}
	// The queue first: its data directory's lock refuses a second
	// gateway on the same directory before anything else of it starts.
	// Its error is not the config file's (a directory held by another
	// gateway or not writable, a port taken; each names its key): no
	// "config PATH:" prefix, which says a key of the file is at fault.
	if err := a.openJobQueue(cfg, reg, &gwOpts); err != nil {
		resp.Close()
		return nil, err
	}
	if err := a.openForecast(cfg, reg, &gwOpts); err != nil { // forecast.* values (the snapshot's failures only warn)
		resp.Close()
		if a.jobs != nil {
			a.jobs.Close()
		}
		return nil, errWithPath(path, err)
	}
	a.queueInfo = queueInfo(cfg.Queue, a.jobs)
	gwOpts.Queue = a.queueInfo
	gwOpts.Discovery = disc.State
	if resp.redis != nil {
		gwOpts.CacheRedisDown = resp.redis.Degraded
	}
	if src.Path != "" { // a config from flags has no reload to report
		gwOpts.ConfigStatus = func() gateway.ConfigStatus { return a.reloads.configStatus() }
	}
	a.gw = gateway.New(built.Runtime, gwOpts)
	if a.jobs != nil {
		a.gw.SetJobQueue(a.jobs.store.Backlog)
		a.gw.SetJobStoreFault(a.jobs.store.DiskFault)
		a.gw.SetRevocations(a.jobs.store)
	}
	registerUpstreamMetrics(reg, deps.Transport)
	registerRingMetrics(reg, deps.Rings)
	registerDrainingGauge(reg, a.gw)
	registerRetiringGauge(reg, &a.retiring)
	a.reloads = newReloadMetrics(reg, deps.Now())
	return a, nil
}

// openForecast starts the traffic forecaster when forecast.enabled and
// hands it to the gateway's options. The gateway does not exist yet: what
// reads its runtime does so through a.gw, set before anything calls it.
func (a *App) openForecast(cfg *config.Config, reg prometheus.Registerer, gwOpts *gateway.Options) error {
	if !cfg.Forecast.Enabled {
		return nil
	}
	fr, err := newForecastRun(cfg.Forecast, cfg.Queue.DataDir, a.deps.Now, a.log)
	if err != nil {
		return err
	}
	a.forecast, gwOpts.Arrivals, gwOpts.ForecastView = fr, fr, fr.hist
	// The history records the forecast at the scaling.lead in force.
	fr.hist.lead = func() time.Duration { return a.gw.Runtime().Config.Scaling.Lead.D() }
	// desired backends looks scaling.lead ahead at the forecast p90.
	gwOpts.Forecast = forecast.Demand{Forecaster: fr.fc}
	// and plans on the service rates measured before a restart.
	gwOpts.Meter = fr.meter
	// Only the models served now: the forecaster keeps a removed model's
	// series (its history, should a reload add it back), but exported they
	// were a per-model panel's line for a model gone, as its other series
	// were before a reload deleted them (telemetry.Metrics.KeepModels).
	reg.MustRegister(newForecastCollector(fr.fc, func(model string) bool {
		return a.gw == nil || a.gw.Runtime().Pools[model] != nil
	}))
	return nil
}

// openJobQueue opens the job queue when queue.enabled and hands its API
// to the gateway's options. An error is the embedded server's, which
// fails the start; an external NATS that is away is retried by Run
// instead (a.jobsRetry). Models are judged served through a.gw, set
// before the queue asks.
func (a *App) openJobQueue(cfg *config.Config, reg prometheus.Registerer, gwOpts *gateway.Options) error {
	if !cfg.Queue.Enabled {
		return nil
	}
	a.queueStart = cfg.Queue
	served := func(model string) bool { _, ok := a.gw.Runtime().Pools[model]; return ok }
	mem := uploadMemory{gwOpts.BodyMemory, gwOpts.BodyMetrics}
	open := func() (*jobQueue, error) { return openQueue(cfg.Queue, reg, a.log, served, a.deps.Now, mem) }
	q, err := open()
	switch {
	case err == nil:
		a.jobs, gwOpts.Jobs = q, q.api
	case cfg.Queue.URL == "" && (jobs.IsDiskFault(err) || jobs.IsDiskFault(jobs.ProbeDir(queueDataDir(cfg.Queue)))):
		// The data directory's disk refuses writes (full, read-only,
		// failing): live traffic does not need it, so the gateway serves
		// and retries (async and batch answer 503 until Run opens the
		// queue) rather than a crash loop taking inference down with it.
		a.log.Error("job queue: its data directory's disk refuses writes; serving without the queue (async jobs, batches and files answer 503) and retrying",
			"data_dir", queueDataDir(cfg.Queue), "error", err.Error())
		a.jobsRetry = open
	case cfg.Queue.URL == "":
		// The embedded server failing otherwise is a local problem
		// (data directory in use, port): say so at start.
		return err
	default:
		// An external NATS being away must not keep the gateway from
		// serving live traffic: async and batch answer 503 until Run
		// connects.
		a.log.Error("job queue unavailable; serving without it and retrying", "url", gateway.RedactURLs(cfg.Queue.URL), "error", err.Error())
		a.jobsRetry = open
	}
	return nil
}

func errWithPath(path string, err error) error {
	if path == "" {
		return err
	}
	return fmt.Errorf("config %s: %w", path, err)
}

// Forecaster is the traffic forecaster (on by default), nil when
// forecast.enabled is false: per model (and busy tenant) arrival rates, mean and p90, up to
// forecast.max_horizon ahead.
func (a *App) Forecaster() *forecast.Forecaster {
	if a.forecast == nil {
		return nil
	}
	return a.forecast.fc
}

// Handler is the gateway's HTTP handler (tests drive it directly).
func (a *App) Handler() http.Handler { return a.gw }

// Gateway exposes the gateway for status inspection in tests.
func (a *App) Gateway() *gateway.Gateway { return a.gw }

// Run serves the public API on ln and the admin endpoints on the admin
// listener (admin.listen, or what ListenAdmin opened) until ctx ends, then
// shuts down gracefully: stop accepting, let in-flight requests (streams
// included) finish for up to shutdown_grace, then close what is left.
func (a *App) Run(ctx context.Context, ln net.Listener) error {
	// Whatever way Run ends, what New opened is closed: the job queue and
	// the cache (whose L1 runs a clean-up goroutine).
	defer a.release()
	if _, err := a.ListenAdmin(""); err != nil {
		ln.Close()
		return err
	}
	// Every public request's context, and every admin one's (the
	// separate workers' jobs run there), descends from base, so that the
	// end of the drain can cut them with a cause the gateway tells from a
	// client that left (drainServer, drainWorkers).
	base, cutRequests := context.WithCancelCause(context.Background())
	defer cutRequests(nil)
	admin := a.serveAdmin(base)
	defer admin()
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		a.closeQueue()
		a.stopChecker()
		a.stopScraper()
		a.stopDiscovery()
		a.drains.cancel()
		a.drains.wg.Wait()
	}()

	a.startLoops(runCtx, &wg)

	sc := a.gw.Runtime().Config.Server
	guarded := a.guard(ln, sc, a.gw.Runtime().Config.Log.Access)
	defer a.unguard()
	srv := newServer(a.gw, guarded, sc, a.log)
	srv.BaseContext = func(net.Listener) context.Context { return base }
	if a.jobs != nil {
		a.jobs.startWorker(a.gw)
	} else if a.jobsRetry != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.connectQueue(runCtx) }()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(guarded) }() // framing inside: see guard
	a.log.Info("sluice gateway listening", "addr", ln.Addr().String(), "tls", a.tls != nil, "models", a.gw.Runtime().Models)
	a.logSummary(ln.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.shutdown(srv, serveErr, cutRequests)
	if a.queueGivenUp.Load() {
		return fmt.Errorf("%w: the job queue did not stop within %s (NATS answers nothing); the jobs it held run again after their AckWait, pending webhooks are resent",
			ErrStopNotClean, time.Duration(a.queueBound.Load()).Round(time.Second))
	}
	return nil
}

// ErrStopNotClean is Run's answer when its stop was given up past a bound
// (the job queue's, queueStopBound): the process exits as after a crash,
// with work possibly unfinished. Before, Run returned nil and `sluice
// serve` exited 0 then, as after a clean stop, so a supervisor (systemd,
// Kubernetes) could not tell; cmd/sluice exits 1 with it, and `sluice
// worker` alike past its own bounds.
var ErrStopNotClean = errors.New("stop not clean")

// startLoops starts what runs beside the server until runCtx ends, each
// on a goroutine wg counts: the health checker and the metrics scraper
// (synced to the config), the reload watcher (when there is a file; in
// place before this returns, so a change made once Run serves is seen),
// the stall watch's beat, the queues' kicks, the forecaster, the ejection
// watcher, the revocation sweep and the discovery sources.
func (a *App) startLoops(runCtx context.Context, wg *sync.WaitGroup) {
	a.syncChecker(a.gw.Runtime().Config.Health.Active)
	a.syncScraper(a.gw.Runtime().Config)
	if a.src.Path != "" {
		ready := make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); a.watchReloads(runCtx, ready) }()
		<-ready
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.deps.Stalls.Run(runCtx, a.deps.Now, a.anyInFlight) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.kickQueues(runCtx) }()
	if a.forecast != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.forecast.run(runCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.watchEjections(runCtx) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.sweepRevocations(runCtx) }()
	a.startDiscovery()
	wg.Add(1)
	go func() { defer wg.Done(); a.runDiscovery(runCtx) }()
}

// shutdown drains srv for shutdown_grace or until Cut (then cuts what is
// left: drainServer), and the job workers alike (drainJobs), waits for
// Serve to return on serveErr, gives the calls that outlive their handlers
// the rest of the grace, and releases what New opened.
func (a *App) shutdown(srv *http.Server, serveErr <-chan error, cutRequests context.CancelCauseFunc) {
	grace := a.gw.Runtime().Config.ShutdownGrace.D()
	a.log.Info("shutting down: draining in-flight requests", "grace", grace.String())
	a.jobsMu.Lock()
	a.stopDue = a.deps.Now().Add(AddBounds(grace, a.cutFor()))
	a.jobsMu.Unlock()
	shutCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	waitJobs := a.drainJobs(shutCtx)
	workersIdle := a.gw.DrainWorkers()
	a.drainServer(srv, shutCtx, cancel, cutRequests)
	a.drainWorkers(workersIdle, shutCtx, cutRequests)
	<-serveErr
	// Calls that outlive their handlers (flights, stale-while-revalidate
	// refreshes, hedge races' losers running on) get what is left of the
	// grace, then are cancelled.
	if err := a.deps.Background.Wait(shutCtx); err != nil {
		a.log.Warn("grace period over; cancelled background calls (cache refreshes, hedge losers)", "error", err.Error())
	}
	waitJobs()
	a.release()
	a.log.Info("stopped")
}

// release closes what New opened, once: running jobs finish or go back to
// the queue, background calls still running are cancelled and joined, idle
// upstream connections close, the runtime retires, the cache stops.
func (a *App) release() {
	a.releaseOnce.Do(func() {
		// Reloads start these (active checks and load metrics are on by
		// default), also in an App that never ran.
		a.stopChecker()
		a.stopScraper()
		a.closeQueue()
		cut, cancel := context.WithCancel(context.Background())
		cancel() // Run gave them the grace already: what is left is cut now
		a.deps.Background.Wait(cut)
		a.gw.Close()             // the Responses ids' Redis writer, after the requests that feed it
		a.deps.Transport.Close() // idle connections, and the lean clients' reapers
		a.reloadMu.Lock()
		a.built.Retire(nil)
		a.reloadMu.Unlock()
		a.joinCallWorkers() // their owners closed: the transport's dials, every forwarder
		if a.resp != nil {
			a.resp.Close()
		}
		// After Run's forecast loop made its last save.
		if a.forecast != nil {
			a.forecast.close()
		}
	})
}

// kickQueueEvery is how often kickQueues kicks the queues while one is
// not at rest.
const kickQueueEvery = 250 * time.Millisecond

// kickQueues kicks the admission queues periodically while one has work
// for a Kick (admission.Queue.Rest): capacity can grow without any request
// ending (a backend returns from ejection, a breaker half-opens), and
// nobody else would notice. While every queue rests it sleeps until one is
// sent work (Deps.QueueWork).
func (a *App) kickQueues(ctx context.Context) {
	whileBusy(ctx, kickQueueEvery, a.ticker, a.deps.QueueWork, func() bool {
		rt := a.gw.Runtime()
		rt.Kick()
		return !rt.Rest()
	})
}

// anyInFlight reports whether any backend has a request in flight: the
// StallWatch beats fast only then (an idle gateway gathers no backlog
// evidence).
func (a *App) anyInFlight() bool {
	rt := a.gw.Runtime()
	for _, model := range rt.Models {
		for _, b := range rt.Pools[model].Backends {
			if b.Inflight() > 0 {
				return true
			}
		}
	}
	return false
}
