package discovery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	updates  *prometheus.CounterVec
	failures *prometheus.CounterVec
	size     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_updates_total",
			Help: "Backend sets a model's discovery sources reported."}, []string{"model"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_discovery_failures_total",
			Help: "Discovery failures (the last known set was kept)."}, []string{"model"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_discovery_backends",
			Help: "Backends the model's discovery sources know now (their last sets, each backend once)."}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.updates, m.failures, m.size)
	}
	return m
}

func (m *metrics) updated(model string, n int) {
	m.updates.WithLabelValues(model).Inc()
	m.size.WithLabelValues(model).Set(float64(n))
}

func (m *metrics) failed(model string) { m.failures.WithLabelValues(model).Inc() }

func (m *metrics) forget(model string) {
	m.updates.DeleteLabelValues(model)
	m.failures.DeleteLabelValues(model)
	m.size.DeleteLabelValues(model)
}
