package scaling

import (
	"math"
	"time"
)

// DemandForecast predicts a model's arrival rate. The forecaster (issue
// 14) implements it to add a lead to desired backends; Policy.Forecast nil
// means none, and the demand is the measured arrival rate alone.
type DemandForecast interface {
	// ArrivalRate is the model's expected arrival rate at `at`, in requests
	// per second as this gateway replica will see them; ok is false when
	// there is no forecast for the model (yet).
	ArrivalRate(model string, at time.Time) (perSecond float64, ok bool)
}

// Policy is how demand becomes desired backends.
type Policy struct {
	// Headroom is the share of capacity kept free above the demand, so a
	// pool at its desired size runs at 1/(1+Headroom) of its measured
	// service rate (default 0.2: about 83%).
	Headroom float64
	// Forecast, when set, is asked for the arrival rate at now+Lead; the
	// demand is the larger of it and the measured rate.
	Forecast DemandForecast
	Lead     time.Duration
	// PriorSlotRate is the completions per slot-second assumed for a pool
	// with no completion measured yet (the admission queue's prior: a
	// request holds a slot for 1 s), so the signal is defined from the
	// first request, even for a pool scaled to zero.
	PriorSlotRate float64
}

// DefaultHeadroom is Policy.Headroom's default (scaling.headroom).
const DefaultHeadroom = 0.2

// BackendState is one backend of the pool as the gateway sees it now.
type BackendState struct {
	Name string
	// Slots is its concurrency limit now: static max_concurrency, else the
	// adaptive limit; 0 = unlimited (then PoolState.DefaultSlots counts).
	// A measured backend counts its mean over its completions instead
	// (Service.Slots).
	Slots  int
	Usable bool
}

// PoolState is a model's pool now: its backends and its admission queue.
type PoolState struct {
	Backends []BackendState
	// Queued requests and their estimated tokens; InUse of Capacity slots
	// (all 0 when admission is off).
	Queued        int
	QueuedTokens  float64
	InUse         int
	Capacity      int
	QueueDrainFor time.Duration // the interactive TTFT objective: queued requests should start within it
	DefaultSlots  int           // slots of a backend with no limit, and of one yet to come (adaptive initial)
}

// Signal is a model's scaling figures at one instant: the Prometheus gauges
// and the admin listener's /scaling JSON (docs/DEPLOY.md documents each
// field).
type Signal struct {
	Model           string    `json:"model"`
	Time            time.Time `json:"time"`
	DesiredBackends float64   `json:"desired_backends"`
	Backends        int       `json:"backends"`
	UsableBackends  int       `json:"usable_backends"`
	// Need splits DesiredBackends into its terms.
	Need Need `json:"need"`

	ArrivalRequestsPerSecond float64 `json:"arrival_requests_per_second"`
	ArrivalTokensPerSecond   float64 `json:"arrival_tokens_per_second"`
	// ArrivalBurst is Reading.ArrivalsBurst: how far arrivals recently ran
	// above the measured demand over half a window, as a share of it.
	ArrivalBurst float64 `json:"arrival_burst"`
	// ForecastRequestsPerSecond is the forecast at now+lead; nil without one.
	ForecastRequestsPerSecond *float64 `json:"forecast_requests_per_second"`
	DemandRequestsPerSecond   float64  `json:"demand_requests_per_second"`
	// InFlightBackends is the backends the requests in flight fill now
	// (slots in use over slots per backend, the larger of Service.Slots
	// and admission's slots now): the demand term's floor.
	InFlightBackends float64 `json:"in_flight_backends"`
	// ServiceSeconds is how long a request holds its slot, slots/μ: the
	// time Little's law extrapolates a rate over. RecentArrivals is the
	// requests that arrived within it (at most the last 10 minutes;
	// 0 when unknown): a rate read over a shorter window plans for no
	// more than those and as many again (docs/DEPLOY.md).
	ServiceSeconds float64 `json:"service_seconds"`
	RecentArrivals float64 `json:"recent_arrivals"`
	// AwaitedClients is Reading.Awaited: refused requests whose clients
	// are expected back (their Retry-After and a grace not yet passed),
	// counted in InFlightBackends with the slots in use.
	AwaitedClients int `json:"awaited_clients"`

	Queued           int                `json:"queued"`
	QueuedTokens     float64            `json:"queued_tokens"`
	QueueWaitSeconds float64            `json:"queue_wait_seconds"`
	InUse            int                `json:"slots_in_use"`
	Capacity         int                `json:"slots"`
	SlotUtilisation  float64            `json:"slot_utilisation"`
	RefusalsPerSec   map[string]float64 `json:"refusals_per_second"`
	// RefusedRetriesPerSec is Reading.RefusedRetries: refusals of the
	// retries of requests refused before, apart from RefusalsPerSec,
	// which counts each request once.
	RefusedRetriesPerSec float64 `json:"refused_retries_per_second"`

	// Service is the mean per-backend service rate the plan divides by.
	Service         BackendService   `json:"service"`
	BackendsService []BackendService `json:"backend_service"`

	Headroom        float64 `json:"headroom"`
	LeadSeconds     float64 `json:"lead_seconds"`
	DrainForSeconds float64 `json:"queue_drain_within_seconds"`
}

// Need is desired backends by term: Demand + Headroom + Burst + Queue.
type Need struct {
	Demand   float64 `json:"demand"`
	Headroom float64 `json:"headroom"`
	// Burst is what the measured demand's recent shortfall adds beyond
	// Demand + Headroom (see Plan).
	Burst float64 `json:"burst"`
	Queue float64 `json:"queue"`
}

// BackendService is a backend's service rate with all its slots busy.
type BackendService struct {
	Backend           string  `json:"backend,omitempty"`
	Slots             float64 `json:"slots"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	// TokensPerSecond counts prompt and answer tokens, of completions whose
	// usage was reported; 0 when none was.
	TokensPerSecond float64 `json:"tokens_per_second"`
	Measured        bool    `json:"measured"`
	// AtCapacity: measured while the backend was full, so what it
	// sustains; false: not full yet, an optimistic estimate from all its
	// recent completions.
	AtCapacity bool `json:"at_capacity"`
	// Restored: the at-capacity figure saved before the gateway restarted,
	// in use until the backend is full long enough to be measured again.
	Restored bool `json:"restored"`
}

// Plan computes a model's signal at now from the meter's reading and the
// pool's state:
//
//	μ  = mean over the pool's measured backends of slots × completions per slot-second
//	     (slots: the backend's mean concurrency limit over its completions;
//	     before any backend is measured: mean slots × PriorSlotRate)
//	W  = slots / μ: how long a request holds its slot
//	L(rate, w) = rate/μ                   Little's law, for a rate read over w ≥ W
//	           = min(rate/μ, C(rate)/slots) for w < W: no more than the requests the
//	                                      recent arrivals and the rate keep in
//	                                      service (C: recent.go)
//	M  = max(arrival rate over the window, over a fifth of it)   measured demand
//	n  = max(L(rate over the window, window), L(rate over a fifth, window/5),
//	         forecast at now+lead / μ,
//	         (slots in use + awaited) / max(slots, slots now))  the requests in flight
//	                                  now and the refused clients expected back
//	desired = max(n + Headroom × n,
//	              L(M × (1 + burst), window/2) × (1 + Headroom))  burst: how far the
//	                                  arrivals of half a window recently ran above M
//	        + min(queued / (μ × drain_for),  the queue started within the objective,
//	              queued / slots)            at most a slot per queued request
//
// L's bound (recent.go): a rate read over a window shorter than the hold
// is not known to last the hold, so it plans for the requests that came
// within the hold and at most as many again; a rate that has lasted half
// the hold reads as Little's law. It is what keeps a second's burst behind
// long requests from reading as hundreds of backends (2 × 32 requests /
// 2 slots = 32, where rate × hold read 96 + 115).
//
// The burst term plans for the next half window as the recent ones went:
// refusals come once the queue holds more than its delay target (500 ms by
// default), so on a ramp or a burst the pool is refused while the decayed
// rates still describe the seconds before (docs/BENCHMARKS.md §11). It
// scales the measured demand only: the forecast's p90 is a margin already,
// and the in-flight floor is what is, not an estimate.
//
// The in-flight floor guards against μ read too high: measured from few
// completions (after a restart or a quiet spell the short requests end
// first) or below capacity (a part-full batch runs faster), D/μ would
// shrink a pool whose slots are busy; the slots in use need no estimate.
// The refused clients still expected back (Reading.Awaited) count with
// the requests in flight: each is a client waiting for a slot, outside the
// queue. Counting their attempts as arrivals instead made every retry new
// demand (retry.go); counting them not at all, a pool refusing a closed
// loop of clients would read as the throughput it already serves.
// It divides by the larger of the slots μ was measured on and the slots
// admission has now (slotsNow): at start-up the adaptive limits grow out
// of their slow start, so the mean over the completions so far is below
// what the backends hold now, and the requests in flight would read as
// more backends than the pool has while it serves them
// (docs/BENCHMARKS.md §11). A limit cut below its mean (TTFT rising) does
// not lower the floor.
// Every term is linear in what this replica saw (its arrivals, its queue,
// its requests in flight) but for that max, which only adds, so with
// several gateway replicas sum() of their desired backends is at least
// the model's need. L's bound is each replica's, over its own arrivals:
// with the arrivals spread over the replicas in steady shares it sums to
// the bound of them all; a replica that sees a rate but few of the
// arrivals behind it bounds lower. It is fractional; a scaler rounds up.
func Plan(model string, now time.Time, r Reading, p PoolState, pol Policy) Signal {
	s := Signal{Model: model, Time: now, Backends: len(p.Backends),
		ArrivalRequestsPerSecond: r.Arrivals, ArrivalTokensPerSecond: r.ArrivalTokens, ArrivalBurst: r.ArrivalsBurst,
		Queued: p.Queued, QueuedTokens: p.QueuedTokens, InUse: p.InUse, Capacity: p.Capacity,
		AwaitedClients: r.Awaited, RefusalsPerSec: r.Refusals, RefusedRetriesPerSec: r.RefusedRetries, Headroom: pol.Headroom, LeadSeconds: pol.Lead.Seconds(),
		DrainForSeconds: p.QueueDrainFor.Seconds(), BackendsService: []BackendService{}}
	if s.RefusalsPerSec == nil {
		s.RefusalsPerSec = map[string]float64{}
	}
	if r.WaitKnown {
		s.QueueWaitSeconds = r.Wait.Seconds()
	}
	if p.Capacity > 0 {
		s.SlotUtilisation = float64(p.InUse) / float64(p.Capacity)
	}
	s.Service = meanService(&s, r, p, pol)

	measured := max(r.Arrivals, r.ArrivalsRising)
	s.DemandRequestsPerSecond = measured
	if pol.Forecast != nil {
		if f, ok := pol.Forecast.ArrivalRate(model, now.Add(pol.Lead)); ok && f >= 0 && !math.IsInf(f, 0) && !math.IsNaN(f) {
			s.ForecastRequestsPerSecond = &f
			s.DemandRequestsPerSecond = max(s.DemandRequestsPerSecond, f)
		}
	}
	if s.DemandRequestsPerSecond < minArrivalRate { // a forecast decayed to nothing
		s.DemandRequestsPerSecond = 0
	}
	if slots := max(s.Service.Slots, slotsNow(p)); slots > 0 {
		s.InFlightBackends = float64(p.InUse+r.Awaited) / slots
	}
	if mu := s.Service.RequestsPerSecond; mu > 0 {
		s.ServiceSeconds = s.Service.Slots / mu
		b := boundedRates{r: r, mu: mu, hold: s.ServiceSeconds, slots: max(s.Service.Slots, slotsNow(p))}
		if b.slots > 0 {
			if c, ok := r.Recent.inService(0, s.ServiceSeconds); ok {
				s.RecentArrivals = c
			}
		}
		// Each measured rate planned for no longer than it is known to
		// last (recent.go); the forecast is a model of the coming hours,
		// not a short window, and the in-flight floor is what is.
		measuredNeed := max(b.backends(r.Arrivals, r.Window), b.backends(r.ArrivalsRising, r.Window/riseDivisor))
		s.Need.Demand = max(measuredNeed, s.InFlightBackends)
		if f := s.ForecastRequestsPerSecond; f != nil && *f >= minArrivalRate {
			s.Need.Demand = max(s.Need.Demand, *f/mu)
		}
		s.Need.Headroom = pol.Headroom * s.Need.Demand
		if burst := r.ArrivalsBurst; burst > 0 {
			planned := b.backends(measured*(1+burst), burstHorizon(r.Window))
			s.Need.Burst = max(planned*(1+pol.Headroom)-s.Need.Demand-s.Need.Headroom, 0)
		}
		if drain := p.QueueDrainFor.Seconds(); drain > 0 {
			s.Need.Queue = float64(p.Queued) / (mu * drain)
			// No more than a slot per queued request: with those backends
			// every one starts at once, and more start none sooner. A μ
			// measured low (a few long requests, or short ones queued
			// behind them) made 30 queued requests read as hundreds.
			if slots := max(s.Service.Slots, slotsNow(p)); slots > 0 {
				s.Need.Queue = min(s.Need.Queue, float64(p.Queued)/slots)
			}
		}
	}
	s.DesiredBackends = s.Need.Demand + s.Need.Headroom + s.Need.Burst + s.Need.Queue
	return s
}

// boundedRates turns a measured arrival rate into backends: Little's law
// (rate/μ) for a rate read over a window at least the hold, else no more
// than the requests the model's recent arrivals and the rate can keep in
// service (Recent.inService) over the slots a backend has.
type boundedRates struct {
	r     Reading
	mu    float64 // per backend
	hold  float64 // seconds a request holds its slot: slots/μ
	slots float64 // a backend's, as the in-flight floor counts them
}

func (b boundedRates) backends(rate float64, window time.Duration) float64 {
	n := rate / b.mu
	if b.slots <= 0 || window <= 0 || b.hold <= window.Seconds() {
		return n
	}
	if c, ok := b.r.Recent.inService(rate, b.hold); ok {
		n = min(n, c/b.slots)
	}
	return n
}

// slotsNow is the pool's mean slots per backend at this instant: its
// limits now (DefaultSlots for a backend without one), no more than the
// admission queue's capacity spread over them (routing bounds a limit by
// its peers'); 0 for no backend.
func slotsNow(p PoolState) float64 {
	if len(p.Backends) == 0 {
		return 0
	}
	sum := 0.0
	for _, b := range p.Backends {
		if b.Slots > 0 {
			sum += float64(b.Slots)
		} else {
			sum += float64(p.DefaultSlots)
		}
	}
	if p.Capacity > 0 {
		sum = min(sum, float64(p.Capacity))
	}
	return sum / float64(len(p.Backends))
}

// meanService fills the per-backend service rates and returns their mean
// over the measured backends (the prior when none is).
func meanService(s *Signal, r Reading, p PoolState, pol Policy) BackendService {
	sum := BackendService{AtCapacity: true}
	measured, slots := 0, 0.0
	for _, b := range p.Backends {
		if b.Usable {
			s.UsableBackends++
		}
		n := float64(b.Slots)
		if b.Slots <= 0 {
			n = float64(p.DefaultSlots)
		}
		slots += n
		bs := BackendService{Backend: b.Name, Slots: n}
		if sv, ok := r.Service[b.Name]; ok {
			if sv.Slots > 0 {
				n = sv.Slots
			}
			bs.Slots, bs.Measured, bs.AtCapacity, bs.Restored = n, true, sv.AtCapacity, sv.Restored
			bs.RequestsPerSecond = n * sv.PerSlot
			bs.TokensPerSecond = n * sv.TokensPerSlot
			measured++
			sum.RequestsPerSecond += bs.RequestsPerSecond
			sum.TokensPerSecond += bs.TokensPerSecond
			sum.Slots += n
			sum.AtCapacity = sum.AtCapacity && sv.AtCapacity
			sum.Restored = sum.Restored || sv.Restored
		}
		s.BackendsService = append(s.BackendsService, bs)
	}
	if measured > 0 {
		k := float64(measured)
		return BackendService{Slots: sum.Slots / k, RequestsPerSecond: sum.RequestsPerSecond / k,
			TokensPerSecond: sum.TokensPerSecond / k, Measured: true, AtCapacity: sum.AtCapacity, Restored: sum.Restored}
	}
	mean := float64(p.DefaultSlots)
	if len(p.Backends) > 0 {
		mean = slots / float64(len(p.Backends))
	}
	return BackendService{Slots: mean, RequestsPerSecond: mean * pol.PriorSlotRate}
}
