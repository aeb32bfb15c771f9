package cache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Level names used as metric labels.
const (
	LevelL1 = "l1"
	LevelL2 = "l2"
)

// Metrics are the cache's Prometheus metrics. A nil *Metrics records
// nothing, so levels and caches work without it.
type Metrics struct {
	lookups *prometheus.CounterVec // level, result
	// The lookup series resolved once: the hit path must not hash labels.
	series    map[[2]string]prometheus.Counter
	l1Hit     prometheus.Counter // series' l1 hit: every cache hit counts here, with no map lookup
	coalesced prometheus.Counter
	bytes     *prometheus.GaugeVec   // level
	evictions *prometheus.CounterVec // level, reason
	redisErrs *prometheus.CounterVec // op
	// Response buffers: what coalescing flights and cache fills hold.
	buffered  *prometheus.GaugeVec // kind: flight, capture
	abandoned prometheus.Counter
	detached  prometheus.Counter
	// counts mirror the lookups and coalesced counters for /status (Counts),
	// which reads them without a Prometheus scrape.
	counts struct{ hits, misses, coalesced atomic.Uint64 }
}

// Counts are the cache's lifetime totals, for /status.
type Counts struct {
	// Hits and Misses count lookups answered from a level or not: a
	// request found in L1 is one hit; one missing in L1 and found in L2 is
	// a hit; one missing in both (or L1 alone when there is no L2) is a
	// miss. Coalesced counts requests that joined an identical one in
	// flight instead of going upstream.
	Hits, Misses, Coalesced uint64
}

// Counts returns the totals; zeros for a nil *Metrics.
func (m *Metrics) Counts() Counts {
	if m == nil {
		return Counts{}
	}
	return Counts{Hits: m.counts.hits.Load(), Misses: m.counts.misses.Load(), Coalesced: m.counts.coalesced.Load()}
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, useful in tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cache_lookups_total",
			Help: "Cache lookups by level (l1, l2) and result (hit, miss; l2 also skip: the Bloom filter saved the round trip).",
		}, []string{"level", "result"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cache_coalesced_total",
			Help: "Requests answered by joining an identical request already in flight.",
		}),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_cache_bytes",
			Help: "Approximate bytes held by the in-process cache level.",
		}, []string{"level"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cache_evictions_total",
			Help: "Entries removed by the cache itself, by level and reason (size, expired).",
		}, []string{"level", "reason"}),
		redisErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_cache_redis_errors_total",
			Help: "Failed Redis cache operations by op (get, set); the cache failed open.",
		}, []string{"op"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_response_buffered_bytes",
			Help: "Response bytes held for coalescing flights (kind=flight) and cache fills of uncoalesced requests (kind=capture); each is bounded by cache.max_entry.",
		}, []string{"kind"}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cache_captures_abandoned_total",
			Help: "Answers not cached because they outgrew cache.max_entry (their clients were served without the copy).",
		}),
		detached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_cache_followers_detached_total",
			Help: "Clients of a coalescing flight cut off because they lagged a whole cache.max_entry behind the fastest one.",
		}),
	}
	// Known series start at 0, so dashboards and rate() see them before
	// the first event.
	m.series = map[[2]string]prometheus.Counter{}
	for _, lr := range [][2]string{{LevelL1, "hit"}, {LevelL1, "miss"}, {LevelL2, "hit"}, {LevelL2, "miss"}, {LevelL2, "skip"}} {
		m.series[lr] = m.lookups.WithLabelValues(lr[0], lr[1])
	}
	m.l1Hit = m.series[[2]string{LevelL1, "hit"}]
	m.bytes.WithLabelValues(LevelL1)
	m.evictions.WithLabelValues(LevelL1, "size")
	m.evictions.WithLabelValues(LevelL1, "expired")
	m.redisErrs.WithLabelValues("get")
	m.redisErrs.WithLabelValues("set")
	m.buffered.WithLabelValues(BufferFlight)
	m.buffered.WithLabelValues(BufferCapture)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lookups, m.coalesced, m.bytes, m.evictions, m.redisErrs,
			m.buffered, m.abandoned, m.detached} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) lookup(level, result string) {
	if m != nil {
		m.series[[2]string{level, result}].Inc()
	}
}

// hitL1 counts a lookup found in L1 (lookup(LevelL1, "hit")).
func (m *Metrics) hitL1() {
	if m != nil {
		m.l1Hit.Inc()
	}
}

// answered counts a lookup's final result across the levels, for Counts.
func (m *Metrics) answered(hit bool) {
	switch {
	case m == nil:
	case hit:
		m.counts.hits.Add(1)
	default:
		m.counts.misses.Add(1)
	}
}

// Coalesced counts a request answered by joining an identical one in
// flight.
func (m *Metrics) Coalesced() {
	if m != nil {
		m.coalesced.Inc()
		m.counts.coalesced.Add(1)
	}
}

func (m *Metrics) addBytes(level string, n int) {
	if m != nil {
		m.bytes.WithLabelValues(level).Add(float64(n))
	}
}

func (m *Metrics) evict(level, reason string) {
	if m != nil {
		m.evictions.WithLabelValues(level, reason).Inc()
	}
}

func (m *Metrics) redisError(op string) {
	if m != nil {
		m.redisErrs.WithLabelValues(op).Inc()
	}
}

// Buffer kinds, the label of sluice_response_buffered_bytes.
const (
	BufferFlight  = "flight"
	BufferCapture = "capture"
)

// Buffered adds delta bytes to the response bytes held of kind.
func (m *Metrics) Buffered(kind string, delta int) {
	if m != nil && delta != 0 {
		m.buffered.WithLabelValues(kind).Add(float64(delta))
	}
}

// CaptureAbandoned counts an answer not cached for its size.
func (m *Metrics) CaptureAbandoned() {
	if m != nil {
		m.abandoned.Inc()
	}
}

// FollowerDetached counts a lagging flight client cut off.
func (m *Metrics) FollowerDetached() {
	if m != nil {
		m.detached.Inc()
	}
}
