package admission

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// The fairness tests run a deterministic discrete-event harness in virtual
// time: the queue gets a fake clock, every granted ticket holds its slot for
// cost/speed seconds (a slot serves cost at a fixed speed, as a batch slot
// decodes tokens), and the harness releases it then. Nothing sleeps and the
// outcome is the same on every run.

// load is one tenant's traffic.
type load struct {
	tenant string
	weight float64
	class  Class
	// Closed-loop tenants keep `outstanding` requests in the system at all
	// times (an always-backlogged client). Open-loop tenants arrive at
	// `demand` cost units per second instead.
	outstanding int
	demand      float64
	cost        func(*rand.Rand) float64
}

type service struct {
	tenant     string
	cost       float64
	start, end float64
}

type event struct {
	at     float64
	ticket *Ticket // completion; nil for an open-loop arrival
	ld     *load   // the tenant it belongs to
}

type events []event

func (h events) Len() int           { return len(h) }
func (h events) Less(i, j int) bool { return h[i].at < h[j].at }
func (h events) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *events) Push(x any)        { *h = append(*h, x.(event)) }
func (h *events) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type harness struct {
	t       testing.TB
	q       *Queue
	clk     *fakeClock
	epoch   time.Time
	speed   float64
	rng     *rand.Rand
	now     float64
	ev      events
	pending []pendingReq
	served  []service
}

type pendingReq struct {
	w  *waiter
	ld *load
}

// runLoads drives loads through a queue of `slots` slots for horizon seconds
// and returns each tenant's served cost per second over [warmup, horizon],
// counting each request's service pro rata to its overlap with the window.
func runLoads(t testing.TB, cfg QueueConfig, slots int, speed float64, loads []load, warmup, horizon float64) map[string]float64 {
	t.Helper()
	h := &harness{t: t, clk: newFakeClock(), speed: speed, rng: rand.New(rand.NewPCG(1, 2))}
	h.epoch = h.clk.Now()
	h.q = NewQueue(cfg, newCapacity(slots).get, h.clk.Now)
	for i := range loads {
		ld := &loads[i]
		if ld.outstanding > 0 {
			for range ld.outstanding {
				h.submit(ld)
			}
		} else {
			heap.Push(&h.ev, event{at: h.rng.ExpFloat64() * 5 / ld.demand, ld: ld})
		}
	}
	for len(h.ev) > 0 && h.ev[0].at < horizon {
		e := heap.Pop(&h.ev).(event)
		h.now = e.at
		h.clk.Set(h.epoch.Add(time.Duration(e.at * float64(time.Second))))
		if e.ticket == nil { // open-loop arrival
			h.submit(e.ld)
			next := e.ld.cost(h.rng) // mean interarrival = mean cost / demand
			heap.Push(&h.ev, event{at: h.now + h.rng.ExpFloat64()*next/e.ld.demand, ld: e.ld})
			continue
		}
		e.ticket.Ended(outcome.Success) // every simulated answer is whole
		e.ticket.Release()
		h.collectGrants()
		if e.ld.outstanding > 0 {
			h.submit(e.ld)
		}
	}
	out := make(map[string]float64)
	for _, s := range h.served {
		lo, hi := max(s.start, warmup), min(s.end, horizon)
		if hi > lo {
			out[s.tenant] += s.cost * (hi - lo) / (s.end - s.start)
		}
	}
	for k := range out {
		out[k] /= horizon - warmup
	}
	return out
}

func (h *harness) submit(ld *load) {
	cost := ld.cost(h.rng)
	tk, w, err := h.q.submit(Request{Tenant: ld.tenant, Weight: ld.weight, Class: ld.class, Cost: cost})
	switch {
	case err != nil:
		h.t.Fatalf("unexpected refusal: %v", err)
	case tk != nil:
		h.start(tk, ld, cost)
	default:
		h.pending = append(h.pending, pendingReq{w, ld})
	}
}

func (h *harness) start(tk *Ticket, ld *load, cost float64) {
	end := h.now + cost/h.speed
	h.served = append(h.served, service{tenant: ld.tenant, cost: cost, start: h.now, end: end})
	heap.Push(&h.ev, event{at: end, ticket: tk, ld: ld})
}

// collectGrants starts the waiters a Release granted. The harness runs in one
// goroutine, so reading waiter state after Release returns is ordered.
func (h *harness) collectGrants() {
	keep := h.pending[:0]
	for _, p := range h.pending {
		if p.w.state == granted {
			h.start(p.w.ticket, p.ld, p.w.cost)
		} else {
			keep = append(keep, p)
		}
	}
	h.pending = keep
}

// maxMinFair is the weighted max-min fair allocation of capacity among
// demands (+Inf for a backlogged tenant): water-filling.
func maxMinFair(capacity float64, demand, weight map[string]float64) map[string]float64 {
	alloc := make(map[string]float64)
	left := make([]string, 0, len(demand))
	for k := range demand {
		left = append(left, k)
	}
	for len(left) > 0 && capacity > 1e-12 {
		var wsum float64
		for _, k := range left {
			wsum += weight[k]
		}
		sort.Slice(left, func(i, j int) bool { return demand[left[i]]/weight[left[i]] < demand[left[j]]/weight[left[j]] })
		k := left[0]
		if share := capacity * weight[k] / wsum; demand[k] <= share {
			alloc[k] = demand[k]
			capacity -= demand[k]
			left = left[1:]
			continue
		}
		for _, k := range left {
			alloc[k] = capacity * weight[k] / wsum
		}
		break
	}
	return alloc
}

func fixedCost(c float64) func(*rand.Rand) float64 { return func(*rand.Rand) float64 { return c } }

// logUniform draws costs from lo to hi, evenly spread over orders of magnitude.
func logUniform(lo, hi float64) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 { return math.Round(lo * math.Pow(hi/lo, r.Float64())) }
}

// mixedLoads: request costs from 1x to 1000x. Three backlogged tenants (huge
// prompts, a log-uniform mix, short chats) and one light tenant whose demand
// is below its fair share, so max-min fairness is not just an equal split.
func mixedLoads() []load {
	return []load{
		{tenant: "elephant", outstanding: 8, cost: fixedCost(1000)},
		{tenant: "mixed", outstanding: 8, cost: logUniform(1, 1000)},
		{tenant: "chat", outstanding: 8, cost: fixedCost(10)},
		{tenant: "mouse", demand: 20, cost: logUniform(1, 10)},
	}
}

const (
	fairSlots   = 4
	fairSpeed   = 100.0 // cost units per second per slot: capacity 400/s
	fairWarmup  = 300.0
	fairHorizon = 3300.0
	fairMargin  = 0.10 // each tenant within 10% of its max-min fair share
)

// deviations returns each tenant's relative deviation from its fair share.
func deviations(t *testing.T, served map[string]float64, loads []load) map[string]float64 {
	demand, weight := map[string]float64{}, map[string]float64{}
	for _, ld := range loads {
		demand[ld.tenant] = math.Inf(1)
		if ld.outstanding == 0 {
			demand[ld.tenant] = ld.demand
		}
		weight[ld.tenant] = max(ld.weight, 0)
		if weight[ld.tenant] == 0 {
			weight[ld.tenant] = 1
		}
	}
	fair := maxMinFair(fairSlots*fairSpeed, demand, weight)
	dev := make(map[string]float64)
	for _, ld := range loads {
		k := ld.tenant
		dev[k] = (served[k] - fair[k]) / fair[k]
		t.Logf("%-9s served %7.1f/s  max-min fair %7.1f/s  deviation %+6.1f%%", k, served[k], fair[k], 100*dev[k])
	}
	return dev
}

// sizeOrders are the within-tenant orders fairness must hold under: first
// come first served, and size-aware (short first, ShortFirst bound).
var sizeOrders = []struct {
	name       string
	shortFirst time.Duration
}{{"fifo within tenant", 0}, {"short first within tenant", 250 * time.Millisecond}}

func TestFairQueueMatchesMaxMinFairShares(t *testing.T) {
	for _, o := range sizeOrders {
		t.Run(o.name, func(t *testing.T) {
			loads := mixedLoads()
			served := runLoads(t, QueueConfig{Fair: true, ShortFirst: o.shortFirst}, fairSlots, fairSpeed, loads, fairWarmup, fairHorizon)
			for k, d := range deviations(t, served, loads) {
				if math.Abs(d) > fairMargin {
					t.Errorf("%s: served %+.1f%% off its max-min fair share (margin %.0f%%)", k, 100*d, 100*fairMargin)
				}
			}
		})
	}
}

// Negative control: the same load through FIFO queues must come out unfair,
// or the test above would prove nothing.
func TestFIFOQueueIsUnfair(t *testing.T) {
	loads := mixedLoads()
	served := runLoads(t, QueueConfig{Fair: false}, fairSlots, fairSpeed, loads, fairWarmup, fairHorizon)
	worst := 0.0
	for _, d := range deviations(t, served, loads) {
		worst = max(worst, math.Abs(d))
	}
	if worst <= fairMargin {
		t.Fatalf("FIFO stayed within %.0f%% of max-min fairness (worst %.1f%%): the load does not discriminate", 100*fairMargin, 100*worst)
	}
}

func TestFairQueueRespectsWeights(t *testing.T) {
	loads := []load{
		{tenant: "gold", weight: 3, outstanding: 8, cost: logUniform(1, 1000)},
		{tenant: "silver", weight: 2, outstanding: 8, cost: fixedCost(1000)},
		{tenant: "bronze", weight: 1, outstanding: 8, cost: fixedCost(5)},
	}
	for _, o := range sizeOrders {
		t.Run(o.name, func(t *testing.T) {
			served := runLoads(t, QueueConfig{Fair: true, ShortFirst: o.shortFirst}, fairSlots, fairSpeed, loads, fairWarmup, fairHorizon)
			for k, d := range deviations(t, served, loads) {
				if math.Abs(d) > fairMargin {
					t.Errorf("%s: served %+.1f%% off its weighted share", k, 100*d)
				}
			}
		})
	}
}

// Interactive work goes first, but batch keeps its guaranteed minimum share
// under sustained interactive overload; with the guard off (strict priority)
// it starves, which shows the guard is what keeps it alive.
func TestPriorityWithStarvationGuard(t *testing.T) {
	loads := func() []load {
		return []load{
			{tenant: "app", class: Interactive, outstanding: 16, cost: logUniform(10, 100)},
			{tenant: "nightly", class: Batch, outstanding: 8, cost: fixedCost(200)},
		}
	}
	for _, c := range []struct {
		name     string
		minShare float64
		lo, hi   float64 // batch's share of served cost
	}{
		{"guarded", 0.1, 0.08, 0.12},
		{"strict", -1, 0, 0.001},
	} {
		t.Run(c.name, func(t *testing.T) {
			served := runLoads(t, QueueConfig{Fair: true, MinShare: c.minShare}, fairSlots, fairSpeed, loads(), fairWarmup, fairHorizon)
			share := served["nightly"] / (served["nightly"] + served["app"])
			t.Logf("interactive %.1f/s, batch %.1f/s: batch share %.1f%%", served["app"], served["nightly"], 100*share)
			if share < c.lo || share > c.hi {
				t.Fatalf("batch share %.3f outside [%.3f, %.3f]", share, c.lo, c.hi)
			}
		})
	}
}
