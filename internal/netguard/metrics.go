package netguard

import "github.com/prometheus/client_golang/prometheus"

// Reasons a request body is refused (BodyMetrics.Refused).
const (
	RefusedTooLarge = "too_large" // beyond max_body_bytes: 413
	RefusedMemory   = "memory"    // max_body_memory is full: 503
)

// BodyMetrics count what happens to request bodies. A nil *BodyMetrics
// counts nothing.
type BodyMetrics struct {
	refused  *prometheus.CounterVec
	timeouts *prometheus.CounterVec
}

// NewBodyMetrics registers the request-body metrics on reg; the bytes-held
// gauge reads budget at scrape time.
func NewBodyMetrics(reg prometheus.Registerer, budget *Budget) *BodyMetrics {
	m := &BodyMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_request_body_refused_total",
			Help: "Request bodies refused: too_large (413) or memory (503, server.max_body_memory full).",
		}, []string{"reason"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_request_body_timeouts_total",
			Help: "Request bodies cut with 408, by the bound that ran out: gap (server.body_read_timeout) or total (server.body_total_timeout).",
		}, []string{"bound"}),
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_request_body_bytes",
		Help: "Bytes held in request bodies across all connections (bounded by server.max_body_memory).",
	}, func() float64 { return float64(budget.Held()) })
	reg.MustRegister(m.refused, m.timeouts, held)
	for _, r := range []string{RefusedTooLarge, RefusedMemory} {
		m.refused.WithLabelValues(r)
	}
	for _, b := range []string{"gap", "total"} {
		m.timeouts.WithLabelValues(b)
	}
	return m
}

// Refused counts a body refused for reason.
func (m *BodyMetrics) Refused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *BodyMetrics) timedOut(total bool) {
	if m == nil {
		return
	}
	bound := "gap"
	if total {
		bound = "total"
	}
	m.timeouts.WithLabelValues(bound).Inc()
}
