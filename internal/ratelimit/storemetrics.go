package ratelimit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerLocalStore exports the bound of the in-process buckets, read at
// scrape time so that a check pays nothing for it: buckets held, the
// bound (rate_limits.max_keys), and buckets dropped for room while still
// charged (a flood of more distinct keys, tenants or addresses than the
// bound; each such key may have passed early once).
func registerLocalStore(reg prometheus.Registerer, s *LocalStore) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_ratelimit_buckets",
			Help: "Rate limit buckets the in-process store holds now (keys, tenants and client addresses with a charge)."},
			func() float64 { return float64(s.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_ratelimit_buckets_capacity",
			Help: "Most buckets the in-process store holds (rate_limits.max_keys); past it idle buckets go first."},
			func() float64 { return float64(s.Cap()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_ratelimit_buckets_evicted_total",
			Help: "Buckets dropped for room while still charged: more distinct subjects than rate_limits.max_keys at once (each may have passed early once)."},
			func() float64 { return float64(s.Evicted()) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("ratelimit: register store metrics: %w", err)
		}
	}
	return nil
}
