// Package telemetry builds the gateway's Prometheus metrics and its JSON
// logger. Metrics are registered on a registry passed in (never the global
// one) so tests and reloads stay independent.
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// LLM latencies span milliseconds (cache hits, refusals) to minutes (long
// streams), so the buckets are wider than Prometheus' defaults.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128, 300}

// Metrics are the client- and backend-facing request metrics.
type Metrics struct {
	Requests *prometheus.CounterVec   // model, backend, code
	TTFT     *prometheus.HistogramVec // model: time to first byte / token
	Duration *prometheus.HistogramVec // model: end to end
	Tokens   *prometheus.CounterVec   // model, direction=in|out
	Retries  *prometheus.CounterVec   // model
	// Hedges counts hedged streams by model and event: started, won (its
	// stream was relayed), skipped_capacity (due, but requests waited or
	// no slot was free), skipped_budget (due, but the hedge budget or the
	// attempts were spent).
	Hedges   *prometheus.CounterVec
	Inflight prometheus.Gauge       // client requests being served
	Errors   *prometheus.CounterVec // model, reason: requests the gateway refused or failed
	// SendTimeouts counts clients cut because they accepted no response
	// bytes for server.send_timeout.
	SendTimeouts prometheus.Counter
	// SlotWaits counts requests that, granted by admission, found every
	// backend at its limit and waited for a slot, by model and outcome:
	// served (a slot freed in time) or refused.
	SlotWaits *prometheus.CounterVec
}

// NewMetrics creates and registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_requests_total", Help: "Client requests by model, backend that answered and HTTP status (a status net/http does not name counts under its class, 4xx, or other past 599).",
		}, []string{"model", "backend", "code"}),
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_ttft_seconds", Help: "Time to first token (first response byte; first SSE event for streams).",
			Buckets: latencyBuckets,
		}, []string{"model"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "End-to-end request duration.",
			Buckets: latencyBuckets,
		}, []string{"model"}),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_tokens_total", Help: "Tokens reported by backends (usage), by direction: in (prompt), out (completion).",
		}, []string{"model", "direction"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_retries_total", Help: "Upstream retries on another backend before any byte reached the client.",
		}, []string{"model"}),
		Hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_hedges_total", Help: "Hedged streams by event: started, won, skipped_capacity, skipped_budget.",
		}, []string{"model", "event"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_inflight_requests", Help: "Client requests currently being served.",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_errors_total", Help: "Requests that ended in an error, by reason: the OpenAI error code the client was answered (rate_limit_exceeded, pool_saturated, no_healthy_backend, upstream_timeout, ...).",
		}, []string{"model", "reason"}),
		SendTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_send_timeouts_total", Help: "Clients cut because they accepted no response bytes for server.send_timeout.",
		}),
		SlotWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_slot_waits_total", Help: "Admitted requests that found every backend at its limit and waited for a slot, by outcome: served, refused.",
		}, []string{"model", "outcome"}),
	}
	reg.MustRegister(m.Requests, m.TTFT, m.Duration, m.Tokens, m.Retries, m.Hedges, m.Inflight, m.Errors, m.SendTimeouts, m.SlotWaits)
	return m
}

// BackendSample is one backend's state at scrape time.
type BackendSample struct {
	Model, Backend, State string
	Inflight              int64
	// CPUInflight is the tokenizer calls outstanding on it, apart from
	// its engine slots (endpoint.CPUSlots bounds them).
	CPUInflight        int64
	OutstandingTokens  int64
	Requests, Failures uint64
	LatencySeconds     float64
	// SlowStart is the share of its weight and limit the backend gets
	// (1 unless it is ramping up after joining a running pool).
	SlowStart float64
}

// BackendCollector reports backend state read at scrape time, so the hot
// path pays nothing for these gauges and backends removed by a reload
// disappear from the exposition.
type BackendCollector struct {
	snapshot func() []BackendSample
	inflight *prometheus.Desc
	cpu      *prometheus.Desc
	work     *prometheus.Desc
	state    *prometheus.Desc
	requests *prometheus.Desc
	failures *prometheus.Desc
	latency  *prometheus.Desc
	ramp     *prometheus.Desc
}

// NewBackendCollector builds a collector over snapshot.
func NewBackendCollector(snapshot func() []BackendSample) *BackendCollector {
	l := []string{"model", "backend"}
	return &BackendCollector{
		snapshot: snapshot,
		inflight: prometheus.NewDesc("sluice_backend_inflight", "Requests outstanding on the backend.", l, nil),
		cpu:      prometheus.NewDesc("sluice_backend_cpu_inflight", "Tokenizer calls (/tokenize, /detokenize) outstanding on the backend, apart from its engine slots; at most 16.", l, nil),
		work:     prometheus.NewDesc("sluice_backend_outstanding_tokens", "Estimated tokens (prompt and answer) of the requests outstanding on the backend; what p2c_ewma balances.", l, nil),
		state:    prometheus.NewDesc("sluice_backend_state", "1 for the backend's current state (healthy, busy, ejected, down, open), 0 for the others.", append(l, "state"), nil),
		requests: prometheus.NewDesc("sluice_backend_requests_total", "Upstream attempts sent to the backend.", l, nil),
		failures: prometheus.NewDesc("sluice_backend_failures_total", "Upstream attempts that failed (connect, 5xx, broken stream).", l, nil),
		latency:  prometheus.NewDesc("sluice_backend_latency_ewma_seconds", "Peak-EWMA time to first byte.", l, nil),
		ramp:     prometheus.NewDesc("sluice_backend_slow_start_ratio", "Share of its weight and concurrency limit the backend gets: below 1 while it ramps up after joining a running pool (slow_start).", l, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *BackendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inflight
	ch <- c.cpu
	ch <- c.work
	ch <- c.state
	ch <- c.requests
	ch <- c.failures
	ch <- c.latency
	ch <- c.ramp
}

// Collect implements prometheus.Collector.
func (c *BackendCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.snapshot() {
		ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(s.Inflight), s.Model, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.GaugeValue, float64(s.CPUInflight), s.Model, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.work, prometheus.GaugeValue, float64(s.OutstandingTokens), s.Model, s.Backend)
		for _, st := range []string{"healthy", "busy", "ejected", "down", "open"} {
			v := 0.0
			if st == s.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.Model, s.Backend, st)
		}
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(s.Requests), s.Model, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(s.Failures), s.Model, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, s.LatencySeconds, s.Model, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.ramp, prometheus.GaugeValue, s.SlowStart, s.Model, s.Backend)
	}
}
