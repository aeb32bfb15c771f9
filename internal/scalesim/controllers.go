package scalesim

import (
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// Fixed keeps N servers whatever happens.
type Fixed struct{ N int }

func (f Fixed) Name() string     { return "fixed" }
func (f Fixed) Desired(View) int { return f.N }

// HPA is the Kubernetes HorizontalPodAutoscaler's algorithm
// (pkg/controller/podautoscaler, autoscaling/v2 defaults) on slot
// utilisation averaged over the sync period:
//
//	desired = ceil(serving × utilisation / Target), nothing when within Tolerance of 1
//	scale-up: servers still starting count as 0% busy (as unready pods do), no
//	          stabilisation, at most max(2× current, current + 4) per sync
//	scale-down: the highest recommendation over the stabilisation window
type HPA struct {
	Target    float64       // utilisation target, e.g. 0.7
	Tolerance float64       // 0.1
	Window    time.Duration // scale-down stabilisation (sim time: 300 s of trace / compression)
	recs      []hpaRec
}

type hpaRec struct {
	at   float64
	want int
}

func (h *HPA) Name() string { return "reactive" }

func (h *HPA) Desired(v View) int {
	cur := v.Provisioned
	want := cur
	if v.Serving > 0 {
		ratio := v.Utilisation / h.Target
		switch {
		case ratio > 1+h.Tolerance && v.Starting > 0:
			// Unready servers count as idle on the way up.
			all := float64(v.Serving + v.Starting)
			if r2 := v.Utilisation * float64(v.Serving) / all / h.Target; r2 > 1+h.Tolerance {
				want = int(math.Ceil(r2 * all))
			}
		case ratio > 1+h.Tolerance || ratio < 1-h.Tolerance:
			want = int(math.Ceil(ratio * float64(v.Serving)))
		}
	}
	want = max(want, 1)
	want = min(want, max(2*cur, cur+4))
	h.recs = append(h.recs, hpaRec{v.Now, want})
	keep := h.recs[:0]
	highest := 0
	for _, r := range h.recs {
		if r.at > v.Now-h.Window.Seconds() {
			keep = append(keep, r)
			highest = max(highest, r.want)
		}
	}
	h.recs = keep
	if want >= cur {
		return want
	}
	return min(cur, highest)
}

// Predictive sizes the pool by sluice_model_desired_backends: scaling.Plan
// on a scaling.Meter fed with the pool's traffic, the forecaster's p90 at
// now+Lead as demand, scaling.Hold for a slow scale-in. Times are sim
// times (trace durations / compression).
type Predictive struct {
	Meter      *scaling.Meter
	Forecaster *forecast.Forecaster
	Policy     scaling.Policy // Forecast is set by NewPredictive
	Hold       time.Duration
	SLO        time.Duration // the queue should start within it
	// ServiceRate is the nominal per-server rate, only to plot the
	// forecast in servers.
	ServiceRate float64

	hold      *scaling.Hold
	clock     *traceClock
	forecastN float64
}

const model = "m"

// traceClock maps sim time to the trace time the forecaster counts in.
type traceClock struct {
	demand             forecast.Demand
	simEpoch, traceAt0 time.Time
	compress           float64
}

func (c *traceClock) trace(simSeconds float64) time.Time {
	return c.traceAt0.Add(time.Duration(simSeconds * c.compress * float64(time.Second)))
}

func (c *traceClock) sim(t time.Time) float64 { return t.Sub(c.simEpoch).Seconds() }

func (c *traceClock) ArrivalRate(m string, at time.Time) (float64, bool) {
	return c.demand.ArrivalRate(m, c.trace(c.sim(at)))
}

// NewPredictive builds the controller around fc, which has been fed the
// trace up to traceAt0 (the replay's start); it goes on learning from the
// replayed arrivals, each standing for 1/w.Sample trace requests. fc nil:
// the same signal without a forecast ("signal-only", the ablation).
func NewPredictive(fc *forecast.Forecaster, traceAt0 time.Time, w *Workload, pol scaling.Policy,
	lead, hold, slo time.Duration, serviceRate float64) *Predictive {
	c := &traceClock{demand: forecast.Demand{Forecaster: fc, Scale: w.Sample * w.Compress},
		simEpoch: time.Unix(0, 0), traceAt0: traceAt0, compress: w.Compress}
	pol.Forecast, pol.Lead = nil, 0
	if fc != nil {
		pol.Forecast = c
		pol.Lead = time.Duration(float64(lead) / w.Compress)
	}
	return &Predictive{Meter: scaling.NewMeter(0), Forecaster: fc, Policy: pol,
		Hold: time.Duration(float64(hold) / w.Compress), SLO: slo, ServiceRate: serviceRate,
		hold: scaling.NewHold(), clock: c, forecastN: math.NaN()}
}

func (p *Predictive) Name() string {
	if p.Forecaster == nil {
		return "signal-only"
	}
	return "predictive"
}

func (p *Predictive) at(now float64) time.Time {
	return p.clock.simEpoch.Add(time.Duration(now * float64(time.Second)))
}

func (p *Predictive) arrived(now float64, r *request) {
	p.Meter.Arrived(model, p.at(now), float64(r.prompt+r.out))
	if p.Forecaster == nil {
		return
	}
	per := 1 / (p.clock.demand.Scale / p.clock.compress) // trace requests one replayed request stands for
	p.Forecaster.Observe(p.clock.trace(now), forecast.Key{Model: model}, per, per*float64(r.prompt+r.out))
}

func (p *Predictive) waited(now, wait float64) {
	p.Meter.Waited(model, p.at(now), time.Duration(wait*float64(time.Second)))
}

func (p *Predictive) served(now float64, r *request, srv string, slots int, full bool) {
	held := time.Duration((r.done - r.dispatched) * float64(time.Second))
	p.Meter.Served(model, srv, p.at(now), r.prompt+r.out, float64(slots), held, full)
}

func (p *Predictive) forecastServers() float64 { return p.forecastN }

func (p *Predictive) Desired(v View) int {
	t := p.at(v.Now)
	if p.Forecaster != nil {
		p.Forecaster.Advance(p.clock.trace(v.Now))
	}
	ps := scaling.PoolState{Queued: v.Queued, InUse: v.InUse, Capacity: v.Serving * v.Slots, QueueDrainFor: p.SLO, DefaultSlots: v.Slots,
		Backends: make([]scaling.BackendState, 0, len(v.ServingNames))}
	for _, n := range v.ServingNames {
		ps.Backends = append(ps.Backends, scaling.BackendState{Name: n, Slots: v.Slots, Usable: true})
	}
	sig := scaling.Plan(model, t, p.Meter.Read(model, t, v.ServingNames), ps, p.Policy)
	if f := sig.ForecastRequestsPerSecond; f != nil && p.ServiceRate > 0 {
		p.forecastN = *f / p.ServiceRate
	}
	d := p.hold.At(model, t, sig.DesiredBackends, p.Hold)
	return max(int(math.Ceil(d-1e-9)), 1)
}
