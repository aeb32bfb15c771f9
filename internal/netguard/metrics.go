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
			Help: "Request bodies refused: too_large (413) or memory (503, server.max_body_memory full; Batch API uploads included).",
		}, []string{"reason"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_request_body_timeouts_total",
			Help: "Request bodies cut with 408, by the bound that ran out: gap (server.body_read_timeout) or total (server.body_total_timeout).",
		}, []string{"bound"}),
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_request_body_bytes",
		Help: "Bytes held in request bodies across all connections, Batch API uploads' line buffers included (bounded by server.max_body_memory).",
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

// The listeners whose refusals sluice_connections_refused_total tells
// apart (its listener label).
const (
	ListenerPublic = "public" // server.listen
	ListenerAdmin  = "admin"  // admin.listen
	ListenerPprof  = "pprof"  // the deprecated --pprof flag's
)

// ConnMetrics count client connections. A nil *ConnMetrics counts nothing.
type ConnMetrics struct {
	// listener is the refusal counter's listener label; refusalsOnly marks
	// the admin listener's view (AdminView), which counts nothing else.
	listener     string
	refusalsOnly bool
	open         prometheus.Gauge
	refusal      *prometheus.CounterVec
	header       prometheus.Counter
	timeout      *prometheus.CounterVec
	linger       prometheus.Gauge
	lingers      *prometheus.CounterVec
	// discarding, discards: reads of a refused body's rest after the
	// answer (TimedBody.answerThenDiscard).
	discarding prometheus.Gauge
	discards   *prometheus.CounterVec
	// refusing, refusals: the refusal tier (refusal.go).
	refusing prometheus.Gauge
	refusals *prometheus.CounterVec
	// refusalLingers: the tier's lingering closes after its 503.
	refusalLingers *prometheus.CounterVec
}

// NewConnMetrics registers the connection metrics on reg.
func NewConnMetrics(reg prometheus.Registerer) *ConnMetrics {
	m := &ConnMetrics{
		listener: ListenerPublic,
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_connections_open", Help: "Client connections open now (bounded by server.max_connections).",
		}),
		refusal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_connections_refused_total",
			Help: "Client connections over a cap, by listener (public, admin, or pprof: the --pprof listener) and the cap: max_connections or max_connections_per_ip (public: answered 503 or closed at accept, sluice_connection_refusals_total; admin and pprof: admin.max_connections).",
		}, []string{"listener", "reason"}),
		header: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_request_header_too_large_total",
			Help: "Requests whose head exceeded server.max_header_bytes or held more than 1000 header fields: answered 431, or 414 when the request line alone did.",
		}),
	}
	m.timeout = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connection_timeouts_total",
		Help: "Client connections closed by a server timeout, by phase: idle (server.idle_timeout) or header (server.read_header_timeout).",
	}, []string{"phase"})
	m.linger = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_connections_lingering",
		Help: "Client connections answered while still sending, draining before their close (lingering close); they count against the connection caps.",
	})
	m.lingers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connection_lingers_total",
		Help: "Lingering closes, by how they ended: eof (the client closed), timeout, bytes (the drain bound), shutdown or error.",
	}, []string{"end"})
	m.refusing = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_connections_refusing",
		Help: "Over-cap client connections being answered 503 now (bounded by server.refusal_connections).",
	})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connection_refusals_total",
		Help: "Over-cap client connections by how they ended: answered 503 after their head (head), at refusal_head_timeout (timeout), early under a flood (hurried) or at refusal_head_bytes (head_bytes); closed by the client first (closed); reset, failed write or shutdown (error); closed with no 503, their TLS handshake unfinished (handshake); closed at accept unanswered, the refusal tier full (tier_full); a liveness probe (GET or HEAD /healthz) answered 200 (liveness).",
	}, []string{"outcome"})
	m.refusalLingers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connection_refusal_lingers_total",
		Help: "The refusal tier's lingering closes after its 503 (or liveness 200), by how they ended: eof (the client closed), timeout, bytes, shutdown or error; bounded by server.linger cut to the tier's 5s / 1s / 64MiB. The connection counts in sluice_connections_refusing meanwhile.",
	}, []string{"end"})
	m.discarding = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_connections_discarding",
		Help: "Client connections answered before their body was read, reading and dropping its rest now (server.discard); each holds a handler's goroutine and counts against the connection caps.",
	})
	m.discards = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_connection_discards_total",
		Help: "Reads of a refused body's rest after the answer, by how they ended: kept (the rest arrived, the connection serves the next request), bytes (past server.discard.max_bytes), timeout (read_timeout or total_timeout), shutdown, or error (the client closed or reset, a broken chunk, a failed flush); all but kept close the connection, lingering.",
	}, []string{"end"})
	reg.MustRegister(m.open, m.refusal, m.header, m.timeout, m.linger, m.lingers, m.refusing, m.refusals, m.refusalLingers, m.discarding, m.discards)
	for _, e := range []string{DiscardKept, DiscardBytes, DiscardTimeout, DiscardShutdown, DiscardError} {
		m.discards.WithLabelValues(e)
	}
	for _, o := range []string{RefusalHead, RefusalTimeout, RefusalHurried, RefusalHeadBytes, RefusalClosed, RefusalError, RefusalHandshake, RefusalTierFull, RefusalLiveness} {
		m.refusals.WithLabelValues(o)
	}
	for _, e := range []string{LingerEOF, LingerTimeout, LingerBytes, LingerShutdown, LingerError} {
		m.lingers.WithLabelValues(e)
		m.refusalLingers.WithLabelValues(e)
	}
	m.timeout.WithLabelValues("idle")
	m.timeout.WithLabelValues("header")
	m.refusal.WithLabelValues(ListenerPublic, RefusedMaxConnections)
	m.refusal.WithLabelValues(ListenerPublic, RefusedMaxPerIP)
	m.refusal.WithLabelValues(ListenerAdmin, RefusedMaxConnections) // it has no per-address cap
	return m
}

// AdminView is the metrics of the admin listener: its refusals are
// counted in sluice_connections_refused_total with listener="admin",
// and nothing else (the other connection metrics are the public
// listener's, bounded by server.* settings).
func (m *ConnMetrics) AdminView() *ConnMetrics {
	if m == nil {
		return nil
	}
	return &ConnMetrics{listener: ListenerAdmin, refusalsOnly: true, refusal: m.refusal}
}

// PprofView is AdminView for the deprecated --pprof listener: its
// refusals are counted with listener="pprof" (a series that appears at
// its first refusal: most gateways have no such listener).
func (m *ConnMetrics) PprofView() *ConnMetrics {
	if m == nil {
		return nil
	}
	return &ConnMetrics{listener: ListenerPprof, refusalsOnly: true, refusal: m.refusal}
}

// counts reports whether m counts the metrics other than refusals.
func (m *ConnMetrics) counts() bool { return m != nil && !m.refusalsOnly }

func (m *ConnMetrics) opened(delta float64) {
	if m.counts() {
		m.open.Add(delta)
	}
}

func (m *ConnMetrics) refused(reason string) {
	if m != nil {
		m.refusal.WithLabelValues(m.listener, reason).Inc()
	}
}

func (m *ConnMetrics) refusingDelta(delta float64) {
	if m.counts() {
		m.refusing.Add(delta)
	}
}

func (m *ConnMetrics) refusalEnded(outcome string) {
	if m.counts() {
		m.refusals.WithLabelValues(outcome).Inc()
	}
}

func (m *ConnMetrics) refusalLingerEnded(end string) {
	if m.counts() {
		m.refusalLingers.WithLabelValues(end).Inc()
	}
}

func (m *ConnMetrics) timedOut(phase string) {
	if m.counts() {
		m.timeout.WithLabelValues(phase).Inc()
	}
}

func (m *ConnMetrics) headerTooLarge() {
	if m.counts() {
		m.header.Inc()
	}
}

func (m *ConnMetrics) lingerStarted() {
	if m.counts() {
		m.linger.Inc()
	}
}

func (m *ConnMetrics) lingerEnded(end string) {
	if m.counts() {
		m.linger.Dec()
		m.lingers.WithLabelValues(end).Inc()
	}
}

func (m *ConnMetrics) discardStarted() {
	if m.counts() {
		m.discarding.Inc()
	}
}

func (m *ConnMetrics) discardEnded(end string) {
	if m.counts() {
		m.discarding.Dec()
		m.discards.WithLabelValues(end).Inc()
	}
}
