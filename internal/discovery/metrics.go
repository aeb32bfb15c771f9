package discovery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	updates  *prometheus.CounterVec
	failures *prometheus.CounterVec
	size     *prometheus.GaugeVec
	failing  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_updates_total",
			Help: "Backend sets a model's discovery sources reported."}, []string{"model"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_failures_total",
			Help: "Discovery failures (the last known set was kept)."}, []string{"model"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_backends",
			Help: "Backends the model's discovery sources know now (their last sets, each backend once)."}, []string{"model"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_sources_failing",
			Help: "A model's discovery sources whose last attempt failed (their last set is kept)."}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.updates, m.failures, m.size, m.failing)
	}
	return m
}

func (m *metrics) updated(model string, n int) {
	m.updates.WithLabelValues(model).Inc()
	m.size.WithLabelValues(model).Set(float64(n))
}

func (m *metrics) failed(model string) { m.failures.WithLabelValues(model).Inc() }

func (m *metrics) setFailing(model string, failing []bool) {
	n := 0
	for _, f := range failing {
		if f {
			n++
		}
	}
	m.failing.WithLabelValues(model).Set(float64(n))
}

func (m *metrics) forget(model string) {
	m.failing.DeleteLabelValues(model)
	m.updates.DeleteLabelValues(model)
	m.failures.DeleteLabelValues(model)
	m.size.DeleteLabelValues(model)
}
