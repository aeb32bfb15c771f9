package gateway

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/openai"
	"github.com/sluice-gw/sluice/internal/proxy"
)

// Bounds of the probe budget (probeBudget).
const (
	// probeRate is the backend reads a tenant's lookups of ids nobody
	// holds may cost per second, in the long run; probeBurst, at once.
	// A lookup that finds its response costs nothing (below), so these
	// bound only made-up, expired or mistyped ids: 128 reads a second is
	// 16 lookups a second over 8 backends, far above what a client
	// whose engine restarted (each conversation's next turn misses once,
	// its retries answered by the unknown-id cache) asks, and a bound on
	// what one key can make the pool do however high its request limit.
	probeRate  = 128
	probeBurst = 512
	// maxProbeTenants bounds the tenants tracked; past it, tenants whose
	// balance is whole again are dropped (they carry nothing), then any.
	maxProbeTenants = 10_000
)

// probeBudget bounds, per tenant, the backend reads spent on response
// ids no backend turned out to hold. An id the gateway's map does not
// know is asked of every backend of the deployment (followup.go,
// locate.go); without a bound, a client naming distinct made-up ids
// within its own request limit made each request cost a read of every
// backend (the unknown-id cache, respunknown.go, only catches an id
// asked again). The distinction that keeps legitimate use whole: a
// lookup that finds the response (an id made before a restart or through
// another replica) is given back what it took, so only lookups that find
// nothing spend the budget. A lookup may start while the tenant's balance
// is above zero, and takes the reads it may make (the balance may go
// below zero: a pool larger than the burst can still be asked); past it,
// a 429 whose Retry-After is the wait until the balance is above zero
// again. A token bucket on the gateway's clock, read when used: no
// goroutine. Safe for concurrent use.
type probeBudget struct {
	mu      sync.Mutex
	rate    float64 // reads per second
	burst   float64
	max     int
	tenants map[string]*probeBalance
	refused *prometheus.CounterVec
}

// probeBalance is one tenant's balance as of at.
type probeBalance struct {
	reads float64
	at    time.Time
}

func newProbeBudget(reg prometheus.Registerer, rate, burst float64, max int) *probeBudget {
	p := &probeBudget{rate: rate, burst: burst, max: max, tenants: make(map[string]*probeBalance)}
	p.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_id_lookups_refused_total",
		Help: "Lookups of a response id the gateway does not remember refused with a 429 before asking the backends: " +
			"the tenant's recent lookups of ids no backend held spent its probe budget. By what asked: followup " +
			"(GET, DELETE, input_items, cancel) or continuation (previous_response_id)."}, []string{"path"})
	for _, l := range []string{"followup", "continuation"} {
		p.refused.WithLabelValues(l)
	}
	reg.MustRegister(p.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_probe_tenants",
			Help: "Tenants whose probe budget is remembered (each a client address in open mode): bounded by " +
				"sluice_responses_probe_tenants_limit, past which those whose budget is whole again are forgotten first."},
			func() float64 { return float64(p.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_probe_tenants_limit",
			Help: "The most tenants whose probe budget is remembered."},
			func() float64 { return float64(max) }))
	return p
}

func (p *probeBudget) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tenants)
}

// take reserves n reads for tenant's lookup at now (path labels a
// refusal). ok false: the balance is spent; retry is the wait until it is
// not.
func (p *probeBudget) take(tenant string, n int, now time.Time, path string) (retry time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.balance(tenant, now)
	if b.reads <= 0 {
		p.refused.WithLabelValues(path).Inc()
		return time.Duration(math.Ceil((-b.reads + 1) / p.rate * float64(time.Second))), false
	}
	b.reads -= float64(n)
	return 0, true
}

// giveBack returns n reads of a lookup to tenant: those it did not make,
// or all when it found the response.
func (p *probeBudget) giveBack(tenant string, n int, now time.Time) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.balance(tenant, now)
	b.reads = min(b.reads+float64(n), p.burst)
}

// balance is tenant's balance brought to now (a new tenant's is whole).
func (p *probeBudget) balance(tenant string, now time.Time) *probeBalance {
	b, ok := p.tenants[tenant]
	if !ok {
		if len(p.tenants) >= p.max {
			p.shed(now)
		}
		b = &probeBalance{reads: p.burst, at: now}
		p.tenants[tenant] = b
		return b
	}
	if d := now.Sub(b.at); d > 0 {
		b.reads = min(b.reads+d.Seconds()*p.rate, p.burst)
		b.at = now
	}
	return b
}

// shed makes room for a tenant: drops those whose balance is whole again
// at now, or, when none is, a sixteenth of the others (their debts
// forgotten: a bound on memory matters more than a few tenants' reads).
// Dropping one would make every new tenant range over the whole map
// while all are in debt: 10,000 entries per lookup from a new client
// address; a sixteenth leaves room for the next max/16 first.
func (p *probeBudget) shed(now time.Time) {
	for t, b := range p.tenants {
		if b.reads+now.Sub(b.at).Seconds()*p.rate >= p.burst {
			delete(p.tenants, t)
		}
	}
	target := p.max - max(p.max/16, 1)
	for t := range p.tenants {
		if len(p.tenants) <= target {
			return
		}
		delete(p.tenants, t)
	}
}

// lookupsSpent is the 429 of a lookup refused by the probe budget; param
// names the field that carried the id ("" for a follow-up's path).
func lookupsSpent(id, param string, retry time.Duration) *openai.Error {
	return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded",
		Param: param, RetryAfter: retry,
		Message: "Too many lookups of response ids that no backend holds: response '" + openai.Echo(id) +
			"' is not one the gateway remembers, and finding it means asking every backend. Please retry after the time in Retry-After."}
}

// lookupRefund is what a lookup over n backends gives back when res is
// how it ended: all of it when a backend answered (the response found, or
// the backend's own answer about the id), else the reads it did not make.
func lookupRefund(n int, res proxy.FollowUpResult) int {
	if res.Status != 0 {
		return n
	}
	return n - res.Asked
}
