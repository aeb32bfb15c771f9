package discovery

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	updates  *prometheus.CounterVec
	failures *prometheus.CounterVec
	held     *prometheus.CounterVec
	size     *prometheus.GaugeVec
	failing  *prometheus.GaugeVec
	since    *prometheus.GaugeVec
	known    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_updates_total",
			Help: "Backend sets a model's discovery sources reported."}, []string{"model"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_failures_total",
			Help: "Discovery failures (the last known set was kept)."}, []string{"model"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_reads_held_total",
			Help: "Reads held back before they take backends away: a targets file after writes in place (empty, unparsable or fewer targets) until it settles; a Kubernetes Service found empty, for up to 1 s; a DNS or Consul answer found empty, for 10 s."}, []string{"model"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_backends",
			Help: "Backends the model's discovery sources know now (their last sets, each backend once)."}, []string{"model"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_sources_failing",
			Help: "A model's discovery sources whose last attempt failed (their last set is kept)."}, []string{"model"}),
		since: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_failing_since_timestamp_seconds",
			Help: "Unix time the oldest run of failures among the model's failing discovery sources began; 0 while none fails."}, []string{"model"}),
		known: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_initialized",
			Help: "1 once the model's discovery sources have found a backend set, 0 until then (without static backends the replica is not ready)."}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.updates, m.failures, m.held, m.size, m.failing, m.since, m.known)
	}
	return m
}

func (m *metrics) updated(model string, n int) {
	m.updates.WithLabelValues(model).Inc()
	m.size.WithLabelValues(model).Set(float64(n))
}

func (m *metrics) failed(model string) { m.failures.WithLabelValues(model).Inc() }

func (m *metrics) unsettled(model string) { m.held.WithLabelValues(model).Inc() }

func (m *metrics) setKnown(model string, known bool) {
	v := 0.0
	if known {
		v = 1
	}
	m.known.WithLabelValues(model).Set(v)
}

// setFailing sets the failing count and the oldest failure run's start
// (since, by source; zero where a source does not fail).
func (m *metrics) setFailing(model string, failing []bool, since []time.Time) {
	n := 0
	var oldest time.Time
	for i, f := range failing {
		if f {
			n++
			if oldest.IsZero() || since[i].Before(oldest) {
				oldest = since[i]
			}
		}
	}
	m.failing.WithLabelValues(model).Set(float64(n))
	v := 0.0
	if !oldest.IsZero() {
		v = float64(oldest.UnixNano()) / 1e9
	}
	m.since.WithLabelValues(model).Set(v)
}

func (m *metrics) forget(model string) {
	m.failing.DeleteLabelValues(model)
	m.updates.DeleteLabelValues(model)
	m.failures.DeleteLabelValues(model)
	m.held.DeleteLabelValues(model)
	m.size.DeleteLabelValues(model)
	m.since.DeleteLabelValues(model)
	m.known.DeleteLabelValues(model)
}
