package scaling

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Fatalf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	}
}

func TestRateReadsASteadyStreamAndDecaysAfterIt(t *testing.T) {
	tau := 10 * time.Second
	var r Rate
	if r.At(t0, tau) != 0 {
		t.Fatal("a rate with no events must read 0")
	}
	now := t0
	for range 600 { // 5 per second for 120 s: twelve windows, warmed up
		now = now.Add(200 * time.Millisecond)
		r.Add(now, 1, tau)
	}
	near(t, "steady rate", r.At(now, tau), 5, 0.3)
	near(t, "rate one window after the stream stopped", r.At(now.Add(tau), tau), 5/math.E, 0.15)
	if r.At(now.Add(20*tau), tau) > 0.01 {
		t.Fatal("the rate must fall to nothing once events stop")
	}
	// An event dated just before the last one (concurrent requests) counts.
	before := r.At(now, tau)
	r.Add(now.Add(-time.Millisecond), 1, tau)
	near(t, "late event", r.At(now, tau), before+0.1, 0.001)
}

func TestMeanFollowsTheWindowAndHoldsWhenIdle(t *testing.T) {
	tau := 10 * time.Second
	var m Mean
	if _, ok := m.Value(); ok {
		t.Fatal("an empty mean has no value")
	}
	now := t0
	for range 100 {
		now = now.Add(time.Second)
		m.Add(now, 2, tau)
	}
	for range 100 { // the value changed: after ten windows only the new one counts
		now = now.Add(time.Second)
		m.Add(now, 0.5, tau)
	}
	v, _ := m.Value()
	near(t, "mean after the change", v, 0.5, 0.01)
}

func TestMeterMeasuresServicePerSlotAndForgetsBackendsThatLeft(t *testing.T) {
	m := NewMeter(10 * time.Second)
	now := t0
	for i := range 40 {
		now = now.Add(250 * time.Millisecond)
		// Every completion held its slot 2 s: 0.5 completions per slot-second;
		// half reported 300 tokens (150 per slot-second), half no usage.
		tokens := -1
		if i%2 == 0 {
			tokens = 300
		}
		m.Served("m", "a", now, tokens, 4, 2*time.Second, false)
		m.Arrived("m", now, 400)
		m.Waited("m", now, 100*time.Millisecond)
	}
	m.Refused("m", "pool_saturated", now, false)
	r := m.Read("m", now, []string{"a", "b"})
	sv, ok := r.Service["a"]
	if !ok || r.Service["b"] != (Service{}) {
		t.Fatalf("service %+v: a measured, b not", r.Service)
	}
	near(t, "completions per slot-second", sv.PerSlot, 0.5, 1e-9)
	near(t, "mean slots", sv.Slots, 4, 1e-9)
	near(t, "tokens per slot-second", sv.TokensPerSlot, 150, 1e-9)
	if !r.WaitKnown || r.Wait != 100*time.Millisecond {
		t.Fatalf("wait %v %v, want 100ms", r.Wait, r.WaitKnown)
	}
	near(t, "refusals", r.Refusals["pool_saturated"], 0.1, 1e-9)
	if r.ArrivalTokens < 300*r.Arrivals || r.ArrivalTokens > 500*r.Arrivals {
		t.Fatalf("arrival tokens %.1f/s for %.2f req/s of 400 tokens", r.ArrivalTokens, r.Arrivals)
	}
	if r := m.Read("m", now, []string{"b"}); len(r.Service) != 0 {
		t.Fatal("b has served nothing")
	}
	if r := m.Read("m", now, []string{"a"}); len(r.Service) != 0 {
		t.Fatal("a left the pool (the read before did not name it): its measurement must be gone")
	}
	m.Keep(func(string) bool { return false })
	if r := m.Read("m", now, nil); r.Arrivals != 0 {
		t.Fatal("a model removed by Keep starts again from nothing")
	}
}

// pool is two backends of 4 slots now, 2 of them in use, with queued
// requests waiting and a TTFT objective of 2 s.
func pool(queued int) PoolState {
	return PoolState{Backends: []BackendState{{Name: "a", Slots: 4, Usable: true}, {Name: "b", Slots: 4, Usable: true}},
		Queued: queued, InUse: 2, Capacity: 8, QueueDrainFor: 2 * time.Second, DefaultSlots: 8}
}

func TestPlanIsLittlesLawPlusHeadroomPlusTheQueue(t *testing.T) {
	// Each backend: 4 slots × 0.5 completions per slot-second = 2 req/s.
	r := Reading{Arrivals: 6, Service: map[string]Service{"a": {PerSlot: 0.5, TokensPerSlot: 100, TokensKnown: true}, "b": {PerSlot: 0.5}}}
	s := Plan("m", t0, r, pool(8), Policy{Headroom: 0.2})
	near(t, "per-backend rate", s.Service.RequestsPerSecond, 2, 1e-9)
	near(t, "demand term", s.Need.Demand, 3, 1e-9) // 6 req/s over 2 req/s a backend
	near(t, "headroom term", s.Need.Headroom, 0.6, 1e-9)
	near(t, "queue term", s.Need.Queue, 2, 1e-9) // 8 queued within 2 s at 2 req/s a backend
	near(t, "desired", s.DesiredBackends, 5.6, 1e-9)
	near(t, "utilisation", s.SlotUtilisation, 0.25, 1e-9)
	if s.UsableBackends != 2 || s.Backends != 2 || !s.Service.Measured {
		t.Fatalf("signal %+v", s)
	}
	if s.BackendsService[0].TokensPerSecond != 400 || s.BackendsService[1].TokensPerSecond != 0 {
		t.Fatalf("tokens per backend %+v", s.BackendsService)
	}

	// A measured backend counts its mean limit over its completions, not
	// the limit of this instant (an adaptive limit cut for a moment).
	r8 := Reading{Arrivals: 6, Service: map[string]Service{"a": {PerSlot: 0.5, Slots: 8}, "b": {PerSlot: 0.5, Slots: 8}}}
	near(t, "per-backend rate on the mean slots", Plan("m", t0, r8, pool(0), Policy{}).Service.RequestsPerSecond, 4, 1e-9)

	// Demand measured over a fifth of the window counts when larger: a
	// rise shows at once, a fall only over the whole window.
	rising := r
	rising.ArrivalsRising = 10
	near(t, "desired on the rising rate", Plan("m", t0, rising, pool(0), Policy{}).DesiredBackends, 5, 1e-9)
	rising.ArrivalsRising = 1
	near(t, "desired on the window's rate", Plan("m", t0, rising, pool(0), Policy{}).DesiredBackends, 3, 1e-9)

	// Demand gone, queue empty, nothing in flight: nothing needed.
	idle := pool(0)
	idle.InUse = 0
	if s := Plan("m", t0, Reading{Service: r.Service}, idle, Policy{Headroom: 0.2}); s.DesiredBackends != 0 {
		t.Fatalf("no demand, no queue: desired %.3f, want 0", s.DesiredBackends)
	}
}

func TestPlanUsesThePriorUntilAServiceIsMeasured(t *testing.T) {
	p := pool(0)
	p.Backends[1].Slots = 0 // unlimited: counts DefaultSlots
	s := Plan("m", t0, Reading{Arrivals: 3}, p, Policy{PriorSlotRate: 1})
	// Mean slots (4+8)/2 = 6 at 1 completion per slot-second: 6 req/s a backend.
	near(t, "prior per-backend rate", s.Service.RequestsPerSecond, 6, 1e-9)
	near(t, "desired on the prior", s.DesiredBackends, 0.5, 1e-9)
	if s.Service.Measured {
		t.Fatal("a prior is not a measurement")
	}
	// A pool scaled to zero still asks for backends when requests come.
	s = Plan("m", t0, Reading{Arrivals: 16}, PoolState{DefaultSlots: 8, QueueDrainFor: 2 * time.Second}, Policy{PriorSlotRate: 1})
	near(t, "desired for an empty pool", s.DesiredBackends, 2, 1e-9)
}

type fixedForecast struct {
	rate  float64
	asked time.Time
}

func (f *fixedForecast) ArrivalRate(model string, at time.Time) (float64, bool) {
	f.asked = at
	return f.rate, model == "m"
}

func TestPlanTakesTheLargerOfDemandAndTheForecastAtTheLead(t *testing.T) {
	r := Reading{Arrivals: 2, Service: map[string]Service{"a": {PerSlot: 0.5}, "b": {PerSlot: 0.5}}}
	f := &fixedForecast{rate: 8}
	s := Plan("m", t0, r, pool(0), Policy{Forecast: f, Lead: 3 * time.Minute})
	if !f.asked.Equal(t0.Add(3*time.Minute)) || s.ForecastRequestsPerSecond == nil || *s.ForecastRequestsPerSecond != 8 {
		t.Fatalf("forecast asked at %v, signal %+v", f.asked, s.ForecastRequestsPerSecond)
	}
	near(t, "desired on the forecast", s.DesiredBackends, 4, 1e-9)
	f.rate = 1 // a forecast below what is measured never scales in below it
	near(t, "desired on the measured rate", Plan("m", t0, r, pool(0), Policy{Forecast: f, Lead: time.Minute}).DesiredBackends, 1, 1e-9)
	if s := Plan("other", t0, r, pool(0), Policy{Forecast: f}); s.ForecastRequestsPerSecond != nil {
		t.Fatal("no forecast for the model: none reported")
	}
}

// With several gateway replicas each sees part of the arrivals and of the
// queue; sum() of their desired backends must be what one gateway seeing
// everything would report.
func TestDesiredBackendsSumAcrossReplicas(t *testing.T) {
	svc := map[string]Service{"a": {PerSlot: 0.5}, "b": {PerSlot: 0.5}}
	whole := Plan("m", t0, Reading{Arrivals: 10, Service: svc}, pool(10), Policy{Headroom: 0.2})
	var sum float64
	for _, share := range []struct {
		rate   float64
		queued int
	}{{6, 7}, {3, 2}, {1, 1}} {
		sum += Plan("m", t0, Reading{Arrivals: share.rate, Service: svc}, pool(share.queued), Policy{Headroom: 0.2}).DesiredBackends
	}
	near(t, "sum over replicas", sum, whole.DesiredBackends, 1e-9)

	// The floor of the requests in flight is each replica's own: where it
	// binds (a replica whose slots are busier than its arrivals say), the
	// sum is above the whole's, never below.
	busy := pool(1)
	busy.InUse = 8 // 2 backends' worth in flight against 0.5 from its 1 req/s
	floored := Plan("m", t0, Reading{Arrivals: 1, Service: svc}, busy, Policy{Headroom: 0.2}).DesiredBackends
	near(t, "a replica on its in-flight floor", floored, 2*1.2+0.25, 1e-9)
	if sum-0.85+floored < whole.DesiredBackends {
		t.Fatalf("sum with a floored replica %.3f below the whole's %.3f", sum-0.85+floored, whole.DesiredBackends)
	}
}

func TestCollectorExportsTheSignals(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := Reading{Arrivals: 6, ArrivalTokens: 600, Service: map[string]Service{"a": {PerSlot: 0.5, TokensPerSlot: 100, TokensKnown: true}}}
	reg.MustRegister(NewCollector(func() []Signal { return []Signal{Plan("m", t0, r, pool(0), Policy{})} }))
	want := `
# HELP sluice_backend_service_requests_per_second Completions per second the backend sustains with all its slots busy (slots x completions per slot-second held), measured by this replica; a property of the backend: avg() across replicas.
# TYPE sluice_backend_service_requests_per_second gauge
sluice_backend_service_requests_per_second{backend="a",model="m"} 2
# HELP sluice_model_desired_backends Backends the model needs now to meet its TTFT objective, this replica's share: sum() across gateway replicas is the model's need (docs/DEPLOY.md, Scaling signals).
# TYPE sluice_model_desired_backends gauge
sluice_model_desired_backends{model="m"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_model_desired_backends", "sluice_backend_service_requests_per_second"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewCollector(func() []Signal { return []Signal{Plan("m", t0, r, pool(0), Policy{})} })); n != 8 {
		t.Fatalf("%d series, want 5 per model, 2 for its one measured backend and the awaited limit", n)
	}
}

// Below capacity a backend serves each request faster and an adaptive
// limit may count slots it does not have; only completions at capacity say
// what it sustains, and what they taught survives a calm spell.
func TestServiceAtCapacityWinsAndIsKeptThroughCalm(t *testing.T) {
	m := NewMeter(5 * time.Second)
	now := t0
	for range 50 { // calm: a limit of 40, each request held 1 s
		now = now.Add(100 * time.Millisecond)
		m.Served("m", "a", now, 100, 40, time.Second, false)
	}
	r := m.Read("m", now, []string{"a"})
	if sv := r.Service["a"]; sv.AtCapacity || math.Abs(sv.Slots*sv.PerSlot-40) > 1e-9 {
		t.Fatalf("before the first busy period: %+v, want the optimistic 40 req/s from all completions", sv)
	}
	for range 5 { // a burst's first completions at capacity: not enough to trust
		now = now.Add(100 * time.Millisecond)
		m.Served("m", "a", now, 100, 20, 2*time.Second, true)
	}
	if sv := m.Read("m", now, []string{"a"}).Service["a"]; sv.AtCapacity {
		t.Fatalf("five completions at capacity must not replace the estimate yet: %+v", sv)
	}
	for range 45 { // full: 20 slots, each request held 2 s (its batch full)
		now = now.Add(100 * time.Millisecond)
		m.Served("m", "a", now, 100, 20, 2*time.Second, true)
	}
	for range 50 { // calm again, for an hour
		now = now.Add(time.Minute)
		m.Served("m", "a", now, 100, 40, time.Second, false)
	}
	sv := m.Read("m", now, []string{"a"}).Service["a"]
	if !sv.AtCapacity {
		t.Fatal("the busy period's measurement must be kept through the calm")
	}
	near(t, "sustained rate", sv.Slots*sv.PerSlot, 10, 1e-9)
	near(t, "tokens per slot-second at capacity", sv.TokensPerSlot, 50, 1e-9)
}

// The service rate measured from completions overstates a backend's
// capacity while few of its requests have ended (the short ones end
// first: after a restart, after a quiet spell) or while it is far from
// full; the demand term never falls below the backends the requests in
// flight fill, so such an estimate cannot shrink a busy pool.
func TestPlanNeverBelowTheRequestsInFlight(t *testing.T) {
	// 3 req/s over an estimate of 4 slots × 1.5 = 6 req/s a backend: half a
	// backend, while 7 of the 8 slots are in use.
	r := Reading{Arrivals: 3, Service: map[string]Service{"a": {PerSlot: 1.5}, "b": {PerSlot: 1.5}}}
	p := pool(0)
	p.InUse = 7
	s := Plan("m", t0, r, p, Policy{Headroom: 0.2})
	near(t, "in-flight backends", s.InFlightBackends, 1.75, 1e-9)
	near(t, "demand term on the requests in flight", s.Need.Demand, 1.75, 1e-9)
	near(t, "desired", s.DesiredBackends, 2.1, 1e-9)

	// Demand above what is in flight (a rise, a forecast) still counts.
	r.Arrivals = 30
	s = Plan("m", t0, r, p, Policy{Headroom: 0.2})
	near(t, "demand term on the arrivals", s.Need.Demand, 5, 1e-9)

	// Admission off: nothing known in flight, the arrivals alone count.
	r.Arrivals = 3
	p.InUse, p.Capacity = 0, 0
	near(t, "desired without admission", Plan("m", t0, r, p, Policy{}).DesiredBackends, 0.5, 1e-9)
}

// At start-up the adaptive limits grow out of their slow start: the
// completions so far ended at 8–12 slots a backend while the limits are
// 18 now. The start-up's burst, 22 requests in flight in a pool of 36
// slots that serves them, must not read as more backends than the pool
// has (it did as 22 over the completions' mean slots, ~10: 2.2 backends,
// 2.6 with headroom).
func TestPlanCountsTheRequestsInFlightAgainstTheLimitsNow(t *testing.T) {
	m := NewMeter(10 * time.Second)
	now := t0
	for i := range 40 {
		now = now.Add(250 * time.Millisecond)
		slots := 8 + float64(i/10) // the slow start: 8, 9, 10, 11 slots
		for _, b := range []string{"a", "b"} {
			m.Served("m", b, now, 300, slots, 500*time.Millisecond, false)
		}
		m.Arrived("m", now, 400)
	}
	p := PoolState{Backends: []BackendState{{Name: "a", Slots: 18, Usable: true}, {Name: "b", Slots: 18, Usable: true}},
		InUse: 22, Capacity: 36, QueueDrainFor: 2 * time.Second, DefaultSlots: 8}
	s := Plan("m", now, m.Read("m", now, []string{"a", "b"}), p, Policy{Headroom: 0.2})
	if s.Service.Slots > 10 {
		t.Fatalf("the completions' mean slots %.2f, want those of the slow start", s.Service.Slots)
	}
	near(t, "in-flight backends on the limits now", s.InFlightBackends, 22.0/18, 1e-9)
	if s.DesiredBackends > 2 {
		t.Fatalf("desired %.2f backends for 22 requests in a pool of 2 × 18 slots serving them", s.DesiredBackends)
	}

	// Limits above what admission lets in (routing bounds each by its
	// peers') count as the queue's capacity: 22 of 36 slots still.
	p.Backends[0].Slots, p.Backends[1].Slots = 40, 40
	s = Plan("m", now, m.Read("m", now, []string{"a", "b"}), p, Policy{Headroom: 0.2})
	near(t, "in-flight backends on the queue's capacity", s.InFlightBackends, 22.0/18, 1e-9)

	// A limit cut below its mean over the completions (TTFT rising) does
	// not lower the floor: the backends held more a moment ago.
	p.Backends[0].Slots, p.Backends[1].Slots = 4, 4
	s = Plan("m", now, m.Read("m", now, []string{"a", "b"}), p, Policy{Headroom: 0.2})
	near(t, "in-flight backends on the completions' slots", s.InFlightBackends, 22/s.Service.Slots, 1e-9)
}
