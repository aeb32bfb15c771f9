package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// The /status document: every field is described in docs/STATUS.md, which
// the dashboard (internal/dashboard) and operators' scripts read it by.
// Fields are only ever added, so a script written against an older
// document keeps working.

type statusDoc struct {
	// Time is when the snapshot was taken (RFC 3339, the gateway's clock).
	Time   time.Time    `json:"time"`
	Models []poolStatus `json:"models"`
	Cache  *cacheStatus `json:"cache"`
	Jobs   *jobsStatus  `json:"jobs"`
	// Queue is where the job queue lives (passwords hidden); absent
	// when the gateway was built without one.
	Queue *QueueInfo `json:"queue,omitempty"`
	// Forecast is each model's forecast against its actual arrivals
	// (forecast_status.go); null when forecasting is off.
	Forecast *ForecastStatus `json:"forecast"`
	// Config is whether the config serving is the file on disk and the
	// last refused reload (configstatus.go); absent without a config file.
	Config *ConfigStatus `json:"config,omitempty"`
	// Readiness is what /readyz (the public listener) answers, without
	// its per-model list: whether this replica is ready, and what holds
	// it (models waiting for their first backend set, the issuer's key
	// set), so the admin listener's reader sees why a load balancer took
	// it out.
	Readiness readinessStatus `json:"readiness"`
	// Redis is each use of Redis and whether it is reached ("ok") or
	// bypassed after failures ("degraded": the failure mode answers);
	// absent when nothing uses Redis.
	Redis *redisStatus `json:"redis,omitempty"`
}

// redisStatus is /status's "redis": one field per use configured.
type redisStatus struct {
	// RateLimits is rate_limits.store: redis (failure_mode applies
	// while degraded).
	RateLimits string `json:"rate_limits,omitempty"`
	// Cache is cache.redis (misses go upstream while degraded).
	Cache string `json:"cache,omitempty"`
	// ResponseIDs is where replicas share the Responses API ids
	// (previous_response_id not known here is refused 503 while degraded).
	ResponseIDs string `json:"response_ids,omitempty"`
}

// redisState is the word for a Redis use: ok, or degraded when bypassed.
func redisState(down bool) string {
	if down {
		return "degraded"
	}
	return "ok"
}

// redis is /status's "redis", nil when nothing uses Redis.
func (g *Gateway) redis(rt *Runtime) *redisStatus {
	var rs redisStatus
	if down, shared := rt.limiter.SharedStoreDown(); shared {
		rs.RateLimits = redisState(down)
	}
	if g.cacheRedisDown != nil {
		rs.Cache = redisState(g.cacheRedisDown())
	}
	if g.owners != nil && g.owners.shared != nil {
		rs.ResponseIDs = redisState(g.owners.shared.bypass.Down())
	}
	if rs == (redisStatus{}) {
		return nil
	}
	return &rs
}

// readinessStatus is /status's "readiness" (readyDoc, less its models:
// the models' own entries carry their backends and discovery).
type readinessStatus struct {
	Ready      bool             `json:"ready"`
	WaitingFor []string         `json:"waiting_for"`
	JWKS       auth.KeySetState `json:"jwks,omitempty"`
	// JWKSIssuers: readyDoc's.
	JWKSIssuers map[string]auth.KeySetState `json:"jwks_issuers,omitempty"`
}

type backendStatus struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	State string `json:"state"`
	// Why says, for any state but healthy, what put the backend there and
	// until when: the probe's failure ("connection refused", "status
	// 503"), the passive ejection's bound and end, the breaker, the
	// push-back's end. Before it, /status said "down" or "ejected" and the
	// reason was only in a log line of that moment.
	Why      string `json:"why,omitempty"`
	Inflight int64  `json:"inflight"`
	// CPUInflight is the tokenizer calls outstanding on it, apart from
	// its engine slots (at most endpoint.CPUSlots).
	CPUInflight int64 `json:"cpu_inflight"`
	// OutstandingTokens is the estimated tokens (prompt and answer) of
	// the requests in flight on it: what p2c_ewma balances.
	OutstandingTokens int64   `json:"outstanding_tokens"`
	Requests          uint64  `json:"requests"`
	Failures          uint64  `json:"failures"`
	EWMALatencyMS     float64 `json:"ewma_latency_ms"`
	Weight            int     `json:"weight"`
	MaxConcurrency    int     `json:"max_concurrency"`
	// Limit is the concurrency limit in force: max_concurrency, or the
	// adaptive limit, capped by what the backend can start
	// (load_metrics); 0 = unlimited.
	Limit int `json:"limit"`
	// Slots is the backend's batch size from its scraped metrics: the
	// bound its engine reports, or learned when it queued, the fewer of
	// the two (endpoint.Backend.ScrapedCap); 0 = not known yet.
	Slots int `json:"slots"`
	// SlowStart is the share of its weight and limit the backend gets
	// now: below 1 while it ramps up after joining a running pool.
	SlowStart float64 `json:"slow_start"`
	// Breaker is its circuit breaker's state (closed, half-open, open);
	// absent without a breaker.
	Breaker string `json:"breaker,omitempty"`
	// TTFT is the recent time to first byte of its successful requests.
	TTFT ttftStatus `json:"ttft"`
	// Scraped is the backend's own account of its load (the metrics
	// scraper); absent when it is not scraped or the last scrape is stale.
	Scraped *scrapedStatus `json:"scraped,omitempty"`
}

type ttftStatus struct {
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	Samples uint64  `json:"samples"`
}

type scrapedStatus struct {
	Running      float64 `json:"running"`
	Waiting      float64 `json:"waiting"`
	KVCacheUsage float64 `json:"kv_cache_usage"`
	AgeMS        float64 `json:"age_ms"`
}

type sloStatus struct {
	InteractiveMS float64 `json:"interactive_ms"`
	BatchMS       float64 `json:"batch_ms"`
}

type demandStatus struct {
	InFlight int `json:"in_flight"`
	Queued   int `json:"queued"`
	Capacity int `json:"capacity"`
	// Unlimited: admission is off and a usable backend has no limit, so
	// Capacity (0) says nothing.
	Unlimited bool `json:"unlimited"`
}

type poolStatus struct {
	Model    string          `json:"model"`
	Policy   string          `json:"policy"`
	Backends []backendStatus `json:"backends"`
	// Draining counts backends that left the pool (discovery, reload)
	// with requests still running on them; DrainingBackends lists them.
	Draining         int             `json:"draining"`
	DrainingBackends []backendStatus `json:"draining_backends"`
	// Queue is the admission queue (absent when admission is off).
	Queue  *admission.Stats `json:"queue,omitempty"`
	SLO    sloStatus        `json:"slo"`
	Demand demandStatus     `json:"demand"`
	TTFT   ttftStatus       `json:"ttft"`
	// RequestsTotal and Errors are lifetime counts of finished requests,
	// and of those answered with an error, by error code.
	RequestsTotal uint64            `json:"requests_total"`
	Errors        map[string]uint64 `json:"errors"`
	// Discovery is the model's discovery sources' state, their errors
	// included; absent without discovery.
	Discovery *DiscoveryStatus `json:"discovery,omitempty"`
}

type cacheStatus struct {
	Enabled   bool    `json:"enabled"`
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	HitRatio  float64 `json:"hit_ratio"`
	Coalesced uint64  `json:"coalesced"`
}

type jobsStatus struct {
	Enabled bool  `json:"enabled"`
	Running int64 `json:"running"`
	// Backlog and ActiveBatches come from the queue; null when it is not
	// connected or did not answer.
	Backlog       *uint64 `json:"backlog"`
	ActiveBatches *int    `json:"active_batches"`
	// StoreBytes is what the queue holds on disk, StoreLimitBytes its
	// bound (queue.max_store_bytes, 0: unbounded); null likewise.
	StoreBytes      *int64 `json:"store_bytes"`
	StoreLimitBytes *int64 `json:"store_limit_bytes"`
	// StoreFailing says why the embedded store's disk refuses writes
	// (data directory, since when, nats-server's report); absent when it
	// writes. New jobs, batches and files are answered 503 meanwhile.
	StoreFailing string `json:"store_failing,omitempty"`
	// StoreDamaged says which streams of the embedded store the start
	// found damaged on disk (records lost) and where the damaged files
	// were kept; absent when none. Kept until the next start.
	StoreDamaged string `json:"store_damaged,omitempty"`
	// ClassesDown says which job classes' queue consumers this process's
	// workers cannot create (since when, the latest error): their jobs
	// wait, the other classes run, the workers retry; absent when none.
	ClassesDown string `json:"classes_down,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ttftOf(t endpoint.TTFT) ttftStatus {
	return ttftStatus{P50MS: ms(t.P50), P99MS: ms(t.P99), Samples: t.Samples}
}

func (g *Gateway) backendStatus(b *endpoint.Backend, now time.Time) backendStatus {
	spec := b.Spec()
	bs := backendStatus{
		Name: b.Name(), URL: telemetry.RedactURL(spec.URL), State: b.State(now).String(), Inflight: b.Inflight(), CPUInflight: b.CPUInflight(),
		OutstandingTokens: b.Work(), Requests: b.Requests(), Failures: b.Failures(),
		EWMALatencyMS: ms(b.Latency(now)),
		Weight:        b.Weight(), MaxConcurrency: spec.MaxConcurrency, Limit: b.Limit(),
		SlowStart: b.RampFactor(), TTFT: ttftOf(b.RecentTTFT(now)), Slots: slotsOf(b),
	}
	if br := b.Breaker(); br != nil {
		bs.Breaker = br.State(now).String()
	}
	bs.Why = g.stateWhy(b, now)
	if l, ok := b.Load(); ok && l.Fresh(now) {
		bs.Scraped = &scrapedStatus{Running: l.Running, Waiting: l.Waiting, KVCacheUsage: l.KVCacheUsage, AgeMS: ms(now.Sub(l.At))}
	}
	return bs
}

// status builds the /status document.
func (g *Gateway) status(ctx context.Context) statusDoc {
	rt := g.rt.Load()
	now := g.now()
	out := statusDoc{Time: now, Models: []poolStatus{}}
	if g.queueInfo.Mode != "" {
		q := g.queueInfo.redacted()
		out.Queue = &q
	}
	for _, name := range rt.Models {
		p := rt.Pools[name]
		ps := poolStatus{Model: name, Policy: p.Policy, Draining: p.DrainingNow(), Backends: []backendStatus{}, DrainingBackends: []backendStatus{},
			SLO: sloStatus{InteractiveMS: ms(p.SLO.Interactive), BatchMS: ms(p.SLO.Batch)}, TTFT: ttftOf(endpoint.PoolTTFT(now, p.Backends)),
			Discovery: g.discoveryOf(name)}
		limits, unlimited := 0, false
		for _, b := range p.Backends {
			bs := g.backendStatus(b, now)
			ps.Backends = append(ps.Backends, bs)
			ps.Demand.InFlight += int(bs.Inflight)
			if b.Usable(now) {
				limits += bs.Limit
				unlimited = unlimited || bs.Limit <= 0
			}
		}
		for _, b := range p.Draining {
			if b.Inflight() > 0 {
				bs := g.backendStatus(b, now)
				ps.DrainingBackends = append(ps.DrainingBackends, bs)
				ps.Demand.InFlight += int(bs.Inflight)
			}
		}
		ps.Demand.Capacity, ps.Demand.Unlimited = limits, unlimited
		if unlimited {
			ps.Demand.Capacity = 0
		}
		if p.queue != nil {
			st := p.queue.Stats()
			ps.Queue = &st
			ps.Demand.Queued, ps.Demand.Capacity, ps.Demand.Unlimited = st.Queued, st.Capacity, false
		}
		ps.RequestsTotal, ps.Errors = g.tally.snapshot(name)
		out.Models = append(out.Models, ps)
	}
	out.Cache = &cacheStatus{Enabled: rt.cache != nil}
	if c := rt.cacheMetrics.Counts(); rt.cache != nil {
		out.Cache.Hits, out.Cache.Misses, out.Cache.Coalesced = c.Hits, c.Misses, c.Coalesced
		if c.Hits+c.Misses > 0 {
			out.Cache.HitRatio = float64(c.Hits) / float64(c.Hits+c.Misses)
		}
	}
	out.Forecast = g.forecastStatus(rt, now)
	rd := g.readiness()
	out.Readiness = readinessStatus{Ready: rd.Ready, WaitingFor: rd.WaitingFor, JWKS: rd.JWKS, JWKSIssuers: rd.JWKSIssuers}
	if out.Readiness.WaitingFor == nil {
		out.Readiness.WaitingFor = []string{}
	}
	out.Redis = g.redis(rt)
	if g.configStatus != nil {
		cs := g.configStatus()
		out.Config = &cs
	}
	out.Jobs = &jobsStatus{Enabled: g.queueOn, Running: g.tally.jobsRunning.Load()}
	if f := g.jobQueue.Load(); f != nil {
		bl, ok := g.backlog.read(ctx, now, *f)
		if ok {
			out.Jobs.Backlog, out.Jobs.ActiveBatches = &bl.Jobs, &bl.Batches
			out.Jobs.StoreBytes, out.Jobs.StoreLimitBytes = &bl.StoreBytes, &bl.StoreLimitBytes
		}
		out.Jobs.StoreFailing, out.Jobs.StoreDamaged, out.Jobs.ClassesDown = bl.StoreFailing, bl.StoreDamaged, bl.ClassesDown
	}
	return out
}

func (g *Gateway) serveStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, g.status(r.Context()))
}

// backlogMemo keeps the job queue's backlog for a second: every watcher
// of /status/stream reads it each second, and each read is a round trip
// to JetStream.
type backlogMemo struct {
	mu   sync.Mutex
	at   time.Time
	ok   bool
	last jobsBacklog
}

type jobsBacklog struct {
	Jobs                        uint64
	Batches                     int
	StoreBytes, StoreLimitBytes int64
	StoreFailing, StoreDamaged  string
	ClassesDown                 string
}

func (m *backlogMemo) read(ctx context.Context, now time.Time, f JobQueueStatus) (jobsBacklog, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.at.IsZero() && now.Sub(m.at) < time.Second && now.Sub(m.at) >= 0 {
		return m.last, m.ok
	}
	bl, err := f(ctx)
	m.at, m.ok, m.last = now, err == nil, jobsBacklog{Jobs: bl.Jobs, Batches: bl.Batches,
		StoreBytes: bl.StoreBytes, StoreLimitBytes: bl.StoreLimitBytes, StoreFailing: bl.StoreFailing,
		StoreDamaged: bl.StoreDamaged, ClassesDown: bl.ClassesDown}
	return m.last, m.ok
}

// slotsOf is a backend's known batch size (0: not known yet).
func slotsOf(b *endpoint.Backend) int {
	_, slots := b.ScrapedCap()
	return slots
}

// stateWhy is backendStatus.Why: what holds b out of the healthy state at
// now, in the words of the log line that announced it; "" when healthy.
func (g *Gateway) stateWhy(b *endpoint.Backend, now time.Time) string {
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch b.State(now) {
	case endpoint.StateProbeDown:
		if c := b.ProbeCause(); c != "" {
			return "active health check failing: " + c
		}
		return "active health check failing"
	case endpoint.StateEjected:
		why := "passive health check: requests to it failed"
		if rt := g.rt.Load(); rt != nil && rt.Config != nil {
			hp := rt.Config.Health
			why = fmt.Sprintf("passive health check: %d failed requests within %s (health.max_fails, health.fail_timeout)", hp.MaxFails, hp.FailTimeout.D())
		}
		return why + "; tried again from " + at(b.EjectedUntil())
	case endpoint.StateOpen:
		return "circuit breaker open: its errors crossed breaker's threshold; a trial request goes through when it half-opens"
	case endpoint.StateBusy:
		return "answered 429/503 (busy): tried last until " + at(b.BusyUntil())
	}
	return ""
}
