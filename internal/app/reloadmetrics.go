package app

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/gateway"
)

// reloadMetrics tell an operator whether the file on disk is the config
// serving: a refused reload keeps the old config, which answers as
// before, so without them a bad edit (or a ConfigMap update that never
// took) was visible only in the log line of the moment it happened.
// The names follow Prometheus' own (prometheus_config_last_reload_*).
type reloadMetrics struct {
	reloads    *prometheus.CounterVec // result: applied | refused
	lastOK     prometheus.Gauge       // 1 when the last reload was applied (or none was tried), 0 when refused
	lastOKTime prometheus.Gauge       // when the config serving was read: start or last applied reload

	mu     sync.Mutex
	status gateway.ConfigStatus // /status's "config", the same facts and the last refusal's message
}

func newReloadMetrics(reg prometheus.Registerer, loaded time.Time) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_config_reloads_total",
			Help: "Config reloads (SIGHUP, a change of the file) by result: applied, or refused (the old config keeps serving; the log says why)."},
			[]string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_config_last_reload_successful",
			Help: "1 when the last config reload was applied (or none was tried), 0 when it was refused: the file on disk is not the config serving."}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_config_last_reload_success_timestamp_seconds",
			Help: "Unix time the config serving was read: at start, then at each applied reload."}),
	}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
	m.lastOK.Set(1)
	m.lastOKTime.Set(float64(loaded.UnixNano()) / 1e9)
	m.status = gateway.ConfigStatus{LoadedAt: loaded, LastReloadSuccessful: true}
	reg.MustRegister(m.reloads, m.lastOK, m.lastOKTime)
	return m
}

// applied counts a reload applied at at, with what it warned of
// (reloadWarnings).
func (m *reloadMetrics) applied(at time.Time, warnings []string) {
	m.reloads.WithLabelValues("applied").Inc()
	m.lastOK.Set(1)
	m.lastOKTime.Set(float64(at.UnixNano()) / 1e9)
	m.mu.Lock()
	m.status.LoadedAt, m.status.LastReloadSuccessful, m.status.LastReloadWarnings = at, true, warnings
	m.mu.Unlock()
}

// refused counts a refused reload at at; msg is its message as /status
// may show it (no environment values: config.RedactEnv).
func (m *reloadMetrics) refused(at time.Time, msg string) {
	m.reloads.WithLabelValues("refused").Inc()
	m.lastOK.Set(0)
	m.mu.Lock()
	m.status.LastReloadSuccessful = false
	m.status.LastRefusal = &gateway.ConfigRefusal{Time: at, Error: msg}
	m.mu.Unlock()
}

// configStatus is /status's "config" (gateway.Options.ConfigStatus).
func (m *reloadMetrics) configStatus() gateway.ConfigStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}
