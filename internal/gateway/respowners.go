package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the response owner map (respOwners) when Options leave them
// zero: about 100k ids is ~20MB at most, and a day is longer than a
// conversation's follow-ups usually come (engines keep responses in memory
// until they restart; past the TTL, probing finds them still).
const (
	defaultResponseIDs   = 100_000
	defaultResponseIDTTL = 24 * time.Hour
)

// respOwners remembers, for each Responses API response the gateway
// relayed, the backend that made it (engines keep a stored response in
// their own memory, so its follow-ups and previous_response_id must go
// there) and, when auth is on, the tenant it was made for (the only one
// it is shown to). Bounded in count (the newest ids: ownerFIFO) and in age, so it
// costs no more than its bound whatever the traffic; an id it no longer
// knows is found by asking the backends (followup.go). Age is checked when
// an id is looked up, on the gateway's clock: no clean-up goroutine. It outlives reloads: backends are
// named, not pointed to. Safe for concurrent use.
//
// With Redis (Options.ResponseIDsRedis), what the gateway relays is also
// written there (respredis.go), and an id the map does not know, or knows
// only from probing (no owner recorded), is asked of Redis before the
// backends: replicas then share owners, and the tenant check holds on all
// of them. Redis away, the map behaves as without it.
type respOwners struct {
	c       *ownerFIFO
	ttl     time.Duration
	now     func() time.Time
	expired prometheus.Counter
	shared  *sharedOwners // nil without Redis
	// unknown are the ids every backend said it does not hold, for a few
	// seconds (respunknown.go).
	unknown *unknownIDs
	closed  sync.Once
}

// respOwner is where a response lives and whose it is.
type respOwner struct {
	backend string // endpoint.Backend.Name
	// tenant is the tenant it was made for when auth was on; "" when it
	// was not (anyone may ask), or when the gateway found it by probing.
	tenant string
	at     time.Time // when it was remembered
	// probed: found by asking the backends, so no owner is recorded; not
	// shared, and Redis is still asked (another replica may know it).
	probed bool
}

// newRespOwners builds the map; shared, when not nil, is the Redis the
// replicas share it through (its writer runs until close), log gets its
// bypass' lines (nil: slog.Default()).
func newRespOwners(reg prometheus.Registerer, log *slog.Logger, maxIDs int, ttl time.Duration, now func() time.Time, shared *ResponseIDsRedis) *respOwners {
	if maxIDs <= 0 {
		maxIDs = defaultResponseIDs
	}
	if ttl <= 0 {
		ttl = defaultResponseIDTTL
	}
	evicted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_responses_ids_evicted_total",
		Help: "Response ids the gateway forgot before a DELETE, by reason: size (the map's bound) or expired (its TTL). " +
			"Their follow-ups are found by asking the backends in turn."}, []string{"reason"})
	size, expired := evicted.WithLabelValues("size"), evicted.WithLabelValues("expired")
	c := newOwnerFIFO(maxIDs, func(old respOwner) { // pushed out by the bound: counted by what ended it first
		if now().Sub(old.at) > ttl {
			expired.Inc()
		} else {
			size.Inc()
		}
	})
	o := &respOwners{c: c, ttl: ttl, now: now, expired: expired, unknown: newUnknownIDs(reg, maxUnknownIDs, unknownIDTTL)}
	reg.MustRegister(evicted, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids",
		Help: "Response ids the gateway remembers with the backend that made them (bounded by the map's size; " +
			"expired ones until looked up or pushed out)."},
		func() float64 { return float64(c.len()) }))
	if shared != nil {
		o.shared = newSharedOwners(reg, log, *shared, maxIDs, ttl, now, o.holdings)
	}
	return o
}

// remember notes id's owner; one the gateway relayed (not probed) is
// also written to Redis, after the caller's answer and without waiting.
// An id noted unknown is no longer: it exists now.
func (o *respOwners) remember(id string, owner respOwner) {
	owner.at = o.now()
	o.c.set(id, owner)
	o.unknown.forget(id)
	if o.shared != nil && !owner.probed && saneResponseID(id) {
		o.shared.set(id, owner)
	}
}

// lookup is the owner of id, if remembered within the TTL, here or (when
// not here, or only probed here) in Redis, asked within its timeout. An
// id Redis could not be asked about is not found: see find.
func (o *respOwners) lookup(ctx context.Context, id string) (respOwner, bool) {
	owner, ok, _ := o.find(ctx, id)
	return owner, ok
}

// find is lookup that says when the answer is not known: an id this
// replica does not know, or knows only from probing, which Redis could
// not be asked about (failed or bypassed), comes with an
// *errIDsUnavailable. A probed one is still found (its backend is known:
// a continuation may go there), but whose it is was not checked: Redis
// may hold its owner (written late, or again after Redis lost it), so
// with auth on the caller refuses it as an unknown one.
func (o *respOwners) find(ctx context.Context, id string) (respOwner, bool, error) {
	owner, ok := o.local(id)
	if (ok && !owner.probed) || o.shared == nil || !saneResponseID(id) {
		return owner, ok, nil
	}
	s, found, err := o.shared.get(ctx, id)
	switch {
	case found:
		o.c.set(id, s) // with the time it was made: it expires here when it does there
		return s, true, nil
	case err != nil:
		return owner, ok, err
	}
	return owner, ok, nil
}

// local is the owner of id in this replica's map, if within the TTL.
func (o *respOwners) local(id string) (respOwner, bool) {
	owner, ok := o.c.get(id)
	if ok && o.now().Sub(owner.at) > o.ttl {
		if o.c.forget(id) {
			o.expired.Inc()
		}
		return respOwner{}, false
	}
	return owner, ok
}

// forget drops id (deleted on its backend), here and in Redis.
func (o *respOwners) forget(id string) {
	o.c.forget(id)
	if o.shared != nil && saneResponseID(id) {
		o.shared.del(id)
	}
}

// holdings are the owners this replica holds that Redis should have, as
// writes with the time each was made: relayed here or learned from Redis
// (not probed), within the TTL, under an id a follow-up could name.
func (o *respOwners) holdings() []sharedWrite {
	now := o.now()
	var ws []sharedWrite
	for _, e := range o.c.snapshot() {
		if e.owner.probed || now.Sub(e.owner.at) > o.ttl || !saneResponseID(e.id) {
			continue
		}
		ws = append(ws, o.shared.write1(e.id, e.owner))
	}
	return ws
}

// close stops the Redis writer, if any, after its last writes; later
// writes are dropped. Idempotent.
func (o *respOwners) close() {
	o.closed.Do(func() {
		if o.shared != nil {
			o.shared.close()
		}
	})
}
