package scaling

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Meter records, per model, what a scaler needs measured: arrivals
// (requests and estimated tokens), refusals by reason, queue waits, and
// each backend's service (completions and tokens per slot-second held).
// Every figure is decayed over one window (Rate, Mean), so a reading
// describes the last window or so. A Meter outlives config reloads; models
// and backends that left are dropped by Read and Keep. Safe for concurrent
// use; each event costs one short critical section of its model.
type Meter struct {
	mu     sync.RWMutex
	window time.Duration
	models map[string]*modelMeter
	// awaitedUntil is the latest expiry any Await set, in Unix
	// nanoseconds (Awaiting).
	awaitedUntil atomic.Int64
}

// DefaultWindow is the decay window when none is configured
// (scaling.window): short enough that the signal leads a burst's refusals,
// long enough to smooth a trace's second-to-second jitter (docs/BENCHMARKS.md).
const DefaultWindow = 10 * time.Second

// NewMeter returns a meter decaying over window (DefaultWindow if <= 0).
func NewMeter(window time.Duration) *Meter {
	m := &Meter{models: map[string]*modelMeter{}}
	m.SetWindow(window)
	return m
}

// SetWindow changes the decay window (a config reload); figures measured
// so far are kept and decay at the new pace from now on.
func (m *Meter) SetWindow(window time.Duration) {
	if window <= 0 {
		window = DefaultWindow
	}
	m.mu.Lock()
	m.window = window
	m.mu.Unlock()
}

type modelMeter struct {
	mu            sync.Mutex
	arrivals      Rate
	arrivalsFast  Rate // over window/riseDivisor: see Reading.ArrivalsRising
	arrivalTokens Rate
	burst         burst     // how far arrivals ran above their estimate: Reading.ArrivalsBurst
	recent        recentLog // arrivals of the last minutes: Reading.Recent (recent.go)
	refusals      map[string]*Rate
	// refusedRetries counts the refusals of retries (Refused): a client
	// refused again is one request refused, not one more.
	refusedRetries Rate
	wait           Mean
	awaited        awaited // refused requests whose clients are expected back (retry.go)
	backends       map[string]*backendMeter
	// restored is the at-capacity service from before a restart
	// (restore.go); nil: none.
	restored *Service
}

// backendMeter is a backend's service, measured twice: over all its recent
// completions, and over those that ended while it was at capacity.
//
// Only the second is what the backend sustains: below capacity a
// continuous-batching engine serves each request faster than with its
// batch full, and a concurrency limit above its batch size (an adaptive
// limit may settle at two or three times it while TTFT stays within
// tolerance) counts slots it does not have; at capacity, slots ×
// completions per slot-second is its measured throughput whatever the
// limit (Little's law). The at-capacity sums decay per completion, not per
// second, so what the last busy period taught is kept through calm hours;
// the all-completions sums serve until a backend has been at capacity.
type backendMeter struct {
	recent service
	busy   busyService
}

// busySamples is how many at-capacity completions the busy estimate
// averages over; minBusy how many it needs before it is trusted: the
// completions that end while a batch is full right after a burst are its
// short requests, and a handful of them overstate the rate severalfold.
const (
	busySamples = 256
	minBusy     = 32
)

// busyService is service's sums decayed per completion; count is how many
// completions were added, undecayed.
type busyService struct {
	count            int
	n, held, slots   float64
	tokens, heldTokd float64
}

func (s *busyService) add(tokens int, slots float64, held time.Duration) {
	const keep = 1 - 1.0/busySamples
	s.count++
	h := max(held, time.Microsecond).Seconds()
	s.n, s.held, s.slots = s.n*keep+1, s.held*keep+h, s.slots*keep+max(slots, 0)
	s.tokens, s.heldTokd = s.tokens*keep, s.heldTokd*keep
	if tokens >= 0 {
		s.tokens += float64(tokens)
		s.heldTokd += h
	}
}

// service is a backend's sums over its completions decayed over time:
// count, slot time held and the backend's slots when each ended, and the
// same for the completions whose usage was reported.
type service struct {
	n, held, slots   float64 // completions; seconds held; slots
	tokens, heldTokd float64 // tokens of completions with usage; seconds those held
	at               time.Time
}

func (s *service) add(now time.Time, tokens int, slots float64, held time.Duration, tau time.Duration) {
	k := 1.0
	if !s.at.IsZero() {
		k = decay(now.Sub(s.at), tau)
	}
	h := max(held, time.Microsecond).Seconds()
	s.n, s.held, s.slots = s.n*k+1, s.held*k+h, s.slots*k+max(slots, 0)
	s.tokens, s.heldTokd = s.tokens*k, s.heldTokd*k
	if tokens >= 0 {
		s.tokens += float64(tokens)
		s.heldTokd += h
	}
	if now.After(s.at) {
		s.at = now
	}
}

// model returns the meter of name, creating it.
func (m *Meter) model(name string) (*modelMeter, time.Duration) {
	m.mu.RLock()
	mm, tau := m.models[name], m.window
	m.mu.RUnlock()
	if mm != nil {
		return mm, tau
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm = m.models[name]; mm == nil {
		mm = &modelMeter{refusals: map[string]*Rate{}, backends: map[string]*backendMeter{}}
		m.models[name] = mm
	}
	return mm, m.window
}

// Arrived counts a request that asked the model's pool for a slot, of
// tokens estimated tokens (prompt and answer).
func (m *Meter) Arrived(model string, now time.Time, tokens float64) {
	mm, tau := m.model(model)
	mm.mu.Lock()
	mm.arrivals.Add(now, 1, tau)
	mm.arrivalsFast.Add(now, 1, tau/riseDivisor)
	mm.arrivalTokens.Add(now, tokens, tau)
	mm.burst.arrived(now, max(mm.arrivals.At(now, tau), mm.arrivalsFast.At(now, tau/riseDivisor)), tau)
	mm.recent.add(now)
	mm.mu.Unlock()
}

// Refused counts a request of the model refused for reason (the error code
// its client got). retry says the request is the return of one refused
// before (Returned): its refusal is the same request refused again, so it
// counts in Reading.RefusedRetries, not by reason. Counted per attempt, a
// client retrying every second through a 10 s overload read as ten
// refused requests a second where one was (docs/RELIABILITY.md).
func (m *Meter) Refused(model, reason string, now time.Time, retry bool) {
	mm, tau := m.model(model)
	mm.mu.Lock()
	if retry {
		mm.refusedRetries.Add(now, 1, tau)
		mm.mu.Unlock()
		return
	}
	r := mm.refusals[reason]
	if r == nil {
		r = new(Rate)
		mm.refusals[reason] = r
	}
	r.Add(now, 1, tau)
	mm.mu.Unlock()
}

// Waited records the time an admitted request of the model waited in its
// queue (0: granted at once).
func (m *Meter) Waited(model string, now time.Time, d time.Duration) {
	mm, tau := m.model(model)
	mm.mu.Lock()
	mm.wait.Add(now, d.Seconds(), tau)
	mm.mu.Unlock()
}

// Served records a completed request at backend: the slot time it held
// there (from the send to the answer's end), its tokens (prompt and
// answer; negative when the backend reported no usage) and the backend's
// slots (its concurrency limit) as it ended, 0 when unlimited. Slots are
// averaged over the completions, so an adaptive limit's brief cut under
// back-pressure does not read as a backend that lost its capacity. atCapacity
// says the backend was full as the request ended (at its limit, or requests
// waited in the pool's queue): see backendMeter. A backend other gateways
// also send to is full with their requests too: at capacity, pass as slots
// its whole concurrency (this gateway's limit scaled by the backend's
// running and waiting requests over this gateway's), so the rate measured
// is the backend's, not this gateway's share of it.
func (m *Meter) Served(model, backend string, now time.Time, tokens int, slots float64, held time.Duration, atCapacity bool) {
	mm, tau := m.model(model)
	mm.mu.Lock()
	b := mm.backends[backend]
	if b == nil {
		b = new(backendMeter)
		mm.backends[backend] = b
	}
	b.recent.add(now, tokens, slots, held, tau)
	if atCapacity {
		b.busy.add(tokens, slots, held)
	}
	mm.mu.Unlock()
}

// riseDivisor is how much faster ArrivalsRising follows demand than
// Arrivals.
const riseDivisor = 5

// Reading is a model's measured figures at one instant.
type Reading struct {
	Arrivals float64 // requests per second, over the window
	// ArrivalsRising is the same over a fifth of the window: noisier, but it
	// lags a rising demand by a fifth as much. Planning for the larger of
	// the two follows a rise fast and a fall slowly, as a scaler should.
	ArrivalsRising float64
	// ArrivalsBurst is how far the arrivals of half a window have recently
	// run above the larger of the two rates at its start, as a share of it
	// (0: never above; at most 1): the highest over the last six windows
	// (see burst).
	ArrivalsBurst float64
	ArrivalTokens float64            // estimated tokens per second
	Refusals      map[string]float64 // requests refused per second, by reason; reasons below 0.001/s left out
	// RefusedRetries is the refusals per second of retries of requests
	// refused before (Refused), not in Refusals; below 0.001/s it reads 0.
	RefusedRetries float64
	// Wait is the decayed mean queue wait of admitted requests; WaitKnown
	// is false before the first.
	Wait      time.Duration
	WaitKnown bool
	// Awaited is how many refused requests' clients are expected back
	// (Meter.Await): clients waiting for the pool outside it.
	Awaited int
	// Service is per backend name, of the backends asked for.
	Service map[string]Service
	// Window is the meter's decay window (the rates' windows: Arrivals
	// over it, ArrivalsRising over a fifth, ArrivalsBurst over half);
	// Recent the arrivals of the last minutes. Plan bounds a rate read
	// over a window shorter than the requests' hold by them (recent.go).
	Window time.Duration
	Recent Recent
}

// Service is what one backend serves per slot-second it is held: its
// service rate with all its slots busy is Slots × these.
type Service struct {
	PerSlot       float64 // completions per slot-second
	TokensPerSlot float64 // tokens per slot-second, of completions with usage
	TokensKnown   bool    // some completion reported usage
	// Slots is the backend's mean concurrency limit over its completions
	// (0: unlimited).
	Slots float64
	// AtCapacity: the figures come from completions that ended with the
	// backend full (what it sustains); false: from all recent completions,
	// as it has not been full yet (an optimistic estimate).
	AtCapacity bool
	// Evidence is the decayed count of completions behind the figures.
	Evidence float64
	// Restored: the figures are the model's at-capacity mean saved before
	// a restart (Meter.Restore), as this backend has not been full long
	// enough since to be measured.
	Restored bool
}

// minRefusalRate hides reasons that have decayed to nothing.
const minRefusalRate = 0.001

// minArrivalRate is the arrival rate, requests per second, below which a
// model's demand has decayed to nothing (one request per 1,000 s): it and
// its tokens read 0. An exponential decay never reaches 0 on its own: an
// hour after the last request desired backends read 6e-157, which a scaler
// rounds up to a backend, and it took float64 underflow (about 2 h with a
// 10 s window, days with a 10 m one) to read 0. With it the signal reads 0
// within a minute or so of the last request and the scaler's own cool-down
// (KEDA's cooldownPeriod, minReplicaCount) decides about scaling to zero.
const minArrivalRate = 0.001

// Read returns the model's figures at now, with the service of the named
// backends (those without a completion yet are absent). Backends of the
// model not named are forgotten: they left the pool.
func (m *Meter) Read(model string, now time.Time, backends []string) Reading {
	mm, tau := m.model(model)
	mm.mu.Lock()
	defer mm.mu.Unlock()
	r := Reading{Arrivals: mm.arrivals.At(now, tau), ArrivalsRising: mm.arrivalsFast.At(now, tau/riseDivisor), ArrivalTokens: mm.arrivalTokens.At(now, tau),
		ArrivalsBurst: mm.burst.Excess(now, tau), Window: tau, Recent: mm.recent.read(now),
		Refusals: map[string]float64{}, Service: map[string]Service{}}
	if r.Arrivals < minArrivalRate {
		r.Arrivals, r.ArrivalTokens = 0, 0
	}
	if r.ArrivalsRising < minArrivalRate {
		r.ArrivalsRising = 0
	}
	for reason, rate := range mm.refusals {
		if v := rate.At(now, tau); v >= minRefusalRate {
			r.Refusals[reason] = v
		}
	}
	if v := mm.refusedRetries.At(now, tau); v >= minRefusalRate {
		r.RefusedRetries = v
	}
	mm.awaited.prune(now)
	r.Awaited = len(mm.awaited.until)
	if w, ok := mm.wait.Value(); ok {
		r.Wait, r.WaitKnown = time.Duration(w*float64(time.Second)), true
	}
	for name := range mm.backends {
		if !slices.Contains(backends, name) {
			delete(mm.backends, name)
		}
	}
	for _, name := range backends {
		b := mm.backends[name]
		if mm.restored != nil && (b == nil || b.busy.count < minBusy) {
			r.Service[name] = *mm.restored
			continue
		}
		if b == nil || b.recent.n == 0 {
			continue
		}
		s := &b.recent
		sv := Service{PerSlot: s.n / s.held, Slots: s.slots / s.n, Evidence: s.n * decay(now.Sub(s.at), tau)}
		if s.heldTokd > 0 {
			sv.TokensPerSlot, sv.TokensKnown = s.tokens/s.heldTokd, true
		}
		if bs := &b.busy; bs.count >= minBusy {
			sv = Service{PerSlot: bs.n / bs.held, Slots: bs.slots / bs.n, Evidence: bs.n, AtCapacity: true}
			if bs.heldTokd > 0 {
				sv.TokensPerSlot, sv.TokensKnown = bs.tokens/bs.heldTokd, true
			}
		}
		r.Service[name] = sv
	}
	return r
}

// Keep forgets the models keep does not want (removed by a reload).
func (m *Meter) Keep(keep func(model string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range slices.Collect(maps.Keys(m.models)) {
		if !keep(name) {
			delete(m.models, name)
		}
	}
}
