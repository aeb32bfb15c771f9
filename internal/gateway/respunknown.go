package gateway

import (
	"container/list"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the unknown-id cache (unknownIDs).
const (
	// unknownIDTTL is how long an id every backend said it does not hold
	// is answered "not found" without asking them again: long enough that
	// a client retrying a bad id (the SDKs retry within a second or two)
	// or one asking it in a loop costs one probe round per few seconds,
	// short enough that nothing it could hide lasts (ids are made by the
	// backends, at random: an id unknown now is one nobody made).
	unknownIDTTL = 5 * time.Second
	// unknownIDs bounds the entries (about 150 bytes each with the list
	// and maps: 1.5 MB at most); beyond it the oldest is dropped.
	maxUnknownIDs = 10_000
)

// unknownIDs remembers, for a few seconds, the response ids every
// backend of the deployment answered "not found" to (a probe round of a
// follow-up, or of a previous_response_id: locate.go), so that asking
// again answers at once instead of sending a request to every backend
// again: without it, a client retrying a bad id multiplied backend load
// by the pool's size (distinct made-up ids are bounded by the probe
// budget: probebudget.go). Only complete rounds are noted (every backend asked, every one
// answered 404): an id some backend could not be asked about may be
// there.
//
// Keyed by tenant and id: a tenant's "not found" is never another's
// answer, so no tenant can make an id look unknown to another (an id
// about to be relayed, say). A response this replica relays (or finds)
// under an id clears the id for every tenant (forget), whatever its
// entry's age. Bounded in count and age; age is read on the gateway's
// clock when looked up, with no goroutine. Safe for concurrent use.
type unknownIDs struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	order *list.List                          // of unknownKey, oldest first
	byID  map[string]map[string]*list.Element // id → tenant → its element in order
	hits  prometheus.Counter
}

// unknownKey is one entry: what tenant asked, when it was noted.
type unknownKey struct {
	id, tenant string
	at         time.Time
}

func newUnknownIDs(reg prometheus.Registerer, max int, ttl time.Duration) *unknownIDs {
	u := &unknownIDs{max: max, ttl: ttl, order: list.New(), byID: make(map[string]map[string]*list.Element)}
	u.hits = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_responses_ids_unknown_hits_total",
		Help: "Follow-ups and previous_response_ids answered not found without asking the backends: every backend " +
			"answered not found to the same tenant's same id within the last few seconds."})
	reg.MustRegister(u.hits, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids_unknown",
		Help: "Response ids (per tenant) every backend said it does not hold, answered not found for a few seconds " +
			"without probing (bounded; expired ones until looked up or pushed out)."},
		func() float64 { return float64(u.len()) }))
	return u
}

func (u *unknownIDs) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.order.Len()
}

// note records that no backend holds id, as tenant asked it at now.
func (u *unknownIDs) note(tenant, id string, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ts := u.byID[id]
	if e, ok := ts[tenant]; ok {
		u.order.Remove(e)
	}
	if ts == nil {
		ts = make(map[string]*list.Element, 1)
		u.byID[id] = ts
	}
	ts[tenant] = u.order.PushBack(unknownKey{id: id, tenant: tenant, at: now})
	for u.order.Len() > u.max {
		u.remove(u.order.Front())
	}
}

// known says whether id was noted unknown for tenant within the TTL at
// now (counted as a hit).
func (u *unknownIDs) known(tenant, id string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.byID[id][tenant]
	if !ok {
		return false
	}
	if now.Sub(e.Value.(unknownKey).at) >= u.ttl {
		u.remove(e)
		return false
	}
	u.hits.Inc()
	return true
}

// forget clears id for every tenant: a response under it was relayed or
// found.
func (u *unknownIDs) forget(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, e := range u.byID[id] {
		u.remove(e)
	}
}

func (u *unknownIDs) remove(e *list.Element) {
	k := u.order.Remove(e).(unknownKey)
	ts := u.byID[k.id]
	delete(ts, k.tenant)
	if len(ts) == 0 {
		delete(u.byID, k.id)
	}
}
