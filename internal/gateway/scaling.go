package gateway

import (
	"net/http"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// The scaling signals (internal/scaling): the chain tells the meter what
// happens — a live request asking a pool for a slot, its wait, its
// completion at a backend, a refusal — and the plans are computed only when
// read: at a /metrics scrape and on the admin listener's /scaling.
//
// What counts as demand: live requests that ask a pool for a slot. Cache
// hits and coalesced followers need no backend; queued jobs and cache
// refreshes run in spare capacity only, so scaling for them would defeat
// their purpose; rate-limited requests were refused by policy.

// priorSlotRate is the completions per slot-second a pool is assumed to
// serve before one is measured: the admission queue's prior (a request
// holds a slot for 1 s).
const priorSlotRate = 1.0

// arrived counts a live request asking pool for a slot, unless it is a
// refused request's return (demand.go): its client was counted once.
func (g *Gateway) arrived(pool *Pool, c *upstreamCall) {
	if c.live && !c.retry {
		g.meter.Arrived(pool.Model, g.now(), c.cost)
	}
}

// waited records a live request's queue wait on the pool that granted it.
func (g *Gateway) waited(served *Pool, c *upstreamCall, rec *record) {
	if c.live {
		g.meter.Waited(served.Model, g.now(), rec.queued)
	}
}

// served records a completed upstream call on served's backend.
func (g *Gateway) served(served *Pool, res *proxy.Result) {
	if res.Backend == nil || res.Err != nil || res.Held <= 0 || res.Status < 200 || res.Status > 299 {
		return
	}
	tokens := -1
	if res.UsageKnown {
		tokens = res.Usage.PromptTokens + res.Usage.CompletionTokens
	}
	b := res.Backend
	now := g.now()
	limit := b.FullLimit()
	// This request's slot is released already: the backend was full if it
	// was at its limit with this one, or if requests wait for the pool.
	full := limit > 0 && b.Inflight()+1 >= int64(limit) || served.queue != nil && served.queue.Waiting() > 0
	slots := float64(limit)
	if l, ok := b.Load(); full && ok && l.Fresh(now) && l.InflightAtScrape > 0 {
		// Other gateway replicas fill it too: its whole concurrency is ours
		// scaled by all it holds over what we held (scraped backend
		// metrics, when the pool's policy reads them).
		if total := l.Running + l.Waiting; total > float64(l.InflightAtScrape) {
			slots *= total / float64(l.InflightAtScrape)
		}
	}
	g.meter.Served(served.Model, b.Name(), now, tokens, slots, res.Held, full)
}

// refused counts a live request of a configured model answered 429/503,
// by its error code ("backend_busy": a backend's own refusal relayed);
// a retry of a refused request counts apart (scaling.Meter.Refused).
func (g *Gateway) refused(model string, rec *record) {
	if model == "" || rec.job || !refusedForCapacity(rec.status) {
		return
	}
	reason := rec.errCode
	if reason == "" {
		reason = "backend_busy"
	}
	g.meter.Refused(model, reason, g.now(), rec.retry)
}

// scalingPolicy is how the running config turns demand into backends.
func (g *Gateway) scalingPolicy(rt *Runtime) scaling.Policy {
	lead := g.forecastLead
	if lead == 0 {
		lead = rt.Config.Scaling.Lead.D()
	}
	return scaling.Policy{Headroom: rt.Config.Scaling.Headroom, PriorSlotRate: priorSlotRate,
		Forecast: g.forecast, Lead: lead}
}

// signals plans every pool of the running config, in config order.
func (g *Gateway) signals() []scaling.Signal {
	rt := g.rt.Load()
	out := make([]scaling.Signal, 0, len(rt.Models))
	for _, name := range rt.Models {
		out = append(out, g.signal(rt, rt.Pools[name]))
	}
	return out
}

func (g *Gateway) signal(rt *Runtime, p *Pool) scaling.Signal {
	now := g.now()
	ps := scaling.PoolState{QueueDrainFor: p.SLO.Interactive, DefaultSlots: rt.Config.Admission.Adaptive.Initial,
		Backends: make([]scaling.BackendState, 0, len(p.Backends))}
	names := make([]string, 0, len(p.Backends))
	for _, b := range p.Backends {
		ps.Backends = append(ps.Backends, scaling.BackendState{Name: b.Name(), Slots: b.FullLimit(), Usable: b.Usable(now)})
		names = append(names, b.Name())
	}
	if p.queue != nil {
		st := p.queue.Stats()
		ps.Queued, ps.QueuedTokens, ps.InUse, ps.Capacity = st.Queued, st.QueuedCost, st.InUse, st.Capacity
	}
	s := scaling.Plan(p.Model, now, g.meter.Read(p.Model, now, names), ps, g.scalingPolicy(rt))
	// With a forecast, scale-in is slow: the highest need over
	// scaling.scale_in_hold, which includes the need of the demand and
	// queue now (Need keeps the terms of now). Without one the signal
	// follows the measured demand down (the scaler's own stabilisation
	// holds it, 300 s in an HPA).
	if g.forecast != nil {
		s.DesiredBackends = g.hold.At(p.Model, now, s.DesiredBackends, rt.Config.Scaling.ScaleInHold.D())
	}
	return s
}

// serveScaling answers GET /scaling (every model) and /scaling?model=M (one
// model's object, the shape KEDA's metrics-api scaler reads with
// valueLocation: desired_backends). docs/DEPLOY.md documents the fields.
// Other methods are answered 405 before it (adminReadOnly).
func (g *Gateway) serveScaling(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	if !q.Has("model") {
		writeJSON(w, http.StatusOK, struct {
			Models []scaling.Signal `json:"models"`
		}{g.signals()})
		return
	}
	rt := g.rt.Load()
	model := q.Get("model")
	p := rt.Pools[model]
	if p == nil {
		e := openai.NotFound("model_not_found", "The model '"+openai.Echo(model)+"' is not configured.")
		e.Param = "model"
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, g.signal(rt, p))
}
