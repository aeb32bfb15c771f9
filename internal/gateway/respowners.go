package gateway

import (
	"fmt"
	"time"

	"github.com/maypok86/otter/v2"
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
// it is shown to). Bounded in count and age (W-TinyLFU, otter), so it
// costs no more than its bound whatever the traffic; an id it no longer
// knows is found by asking the backends (responses.go). It outlives
// reloads: backends are named, not pointed to. Safe for concurrent use.
type respOwners struct {
	c *otter.Cache[string, respOwner]
}

// respOwner is where a response lives and whose it is.
type respOwner struct {
	backend string // endpoint.Backend.Name
	// tenant is the tenant it was made for when auth was on; "" when it
	// was not (anyone may ask), or when the gateway found it by probing.
	tenant string
}

func newRespOwners(reg prometheus.Registerer, maxIDs int, ttl time.Duration) *respOwners {
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
	c, err := otter.New(&otter.Options[string, respOwner]{
		MaximumSize:      maxIDs,
		ExpiryCalculator: otter.ExpiryWriting[string, respOwner](ttl),
		OnDeletion: func(ev otter.DeletionEvent[string, respOwner]) {
			switch ev.Cause {
			case otter.CauseOverflow:
				size.Inc()
			case otter.CauseExpiration:
				expired.Inc()
			}
		},
	})
	if err != nil {
		panic(fmt.Sprintf("gateway: response owner map: %v", err)) // only for options out of range, fixed above
	}
	o := &respOwners{c: c}
	reg.MustRegister(evicted, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_responses_ids",
		Help: "Response ids the gateway remembers with the backend that made them (bounded by the map's size)."},
		func() float64 { return float64(c.EstimatedSize()) }))
	return o
}

func (o *respOwners) remember(id string, owner respOwner) { o.c.Set(id, owner) }

func (o *respOwners) lookup(id string) (respOwner, bool) { return o.c.GetIfPresent(id) }

func (o *respOwners) forget(id string) { o.c.Invalidate(id) }
