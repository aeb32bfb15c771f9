// Gauges and counters read at scrape time from the gateway's runtime and
// the upstream transport: a request pays nothing for them.

package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
)

// registerDrainingGauge counts the backends removed from their pool
// (discovery, reload) that still run requests.
func registerDrainingGauge(reg prometheus.Registerer, gw *gateway.Gateway) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_backends_draining",
		Help: "Backends removed from their pool (discovery, reload) with requests still running on them."},
		func() float64 {
			n := 0
			for _, p := range gw.Runtime().Pools {
				n += p.DrainingNow()
			}
			return float64(n)
		}))
}

// registerUpstreamMetrics exports the lean upstream client's connection
// pool (upstream_client: lean): idle connections held against their
// bound, opened, reused, and closed because the pool was full; and the
// connections net/http's transport holds (its pool is not exposed). All
// read at scrape time, so a request pays nothing for them.
func registerUpstreamMetrics(reg prometheus.Registerer, tr *proxy.Transport) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upstream_idle_connections",
			Help: "Idle keep-alive connections to http:// backends held by the lean upstream client (bounded per backend by its pool size)."},
			func() float64 { return float64(tr.LeanStats().Idle) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upstream_connections_open",
			Help: "Connections the lean upstream client holds open to http:// backends, idle or carrying a request."},
			func() float64 { return float64(tr.LeanStats().Open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_upstream_connections_opened_total",
			Help: "Connections the lean upstream client opened to http:// backends."},
			func() float64 { return float64(tr.LeanStats().Dials) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_upstream_connections_reused_total",
			Help: "Requests the lean upstream client sent on a pooled keep-alive connection."},
			func() float64 { return float64(tr.LeanStats().Reuses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upstream_idle_connections_limit",
			Help: "Most idle connections the lean upstream client keeps in all (1,024 per backend host:port within it): the serving config's pool, a reload's new one (timeouts.stream_idle or timeouts.connect changed) alone."},
			func() float64 { return float64(tr.LeanStats().MaxIdle) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_upstream_connections_pool_full_total",
			Help: "Reusable connections to http:// backends the lean upstream client closed because its idle pool was full (each a new dial later)."},
			func() float64 { return float64(tr.LeanStats().PoolFull) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_upstream_connections_idle_expired_total",
			Help: "Idle connections to http:// backends the lean upstream client closed because they stayed idle 90 s (closed by its reaper, or when next taken)."},
			func() float64 { return float64(tr.LeanStats().Expired) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upstream_transport_connections",
			Help: "Connections net/http's transport holds open, idle or busy: https backends (HTTP/2 over TLS), upstream_client: net/http, health checks and load scrapes (idle ones bounded at 1,024 per host, 4,096 in all)."},
			func() float64 { open, _ := tr.TransportConns(); return float64(open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_upstream_transport_connections_opened_total",
			Help: "Connections net/http's transport opened (see sluice_upstream_transport_connections)."},
			func() float64 { _, opened := tr.TransportConns(); return float64(opened) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_relay_buffer_bytes",
			Help: "Bytes of the large read buffers relayed streams hold: 32 KiB each once its backend got ahead of the relay (more for one event over 32 KiB, up to 512 KiB); bounded per stream, not by a budget."},
			func() float64 { return float64(tr.RelayBuffers().Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_upstream_read_buffer_bytes",
			Help: "Bytes of the lean upstream client's connection read buffers grown past their first 4 KiB (32 KiB each): while a backend is ahead of the relay reading it, and between reads while over 4 KiB is buffered; idle connections hold none."},
			func() float64 { return float64(tr.LeanStats().ReadBufferBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_call_workers",
			Help: "Workers running streams' first writes and the lean client's dials on a stack of their own, busy or idle (at most 64 per runtime's forwarder and 64 for the dials; each ends 1 s idle, or when its runtime retires)."},
			func() float64 { return float64(tr.Workers().Live()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_call_workers_inline_total",
			Help: "Streams' first writes and lean dials run on their request's own stack because all 64 workers of their pool were busy."},
			func() float64 { return float64(tr.Workers().Inline()) }))
}

// registerRingMetrics exports the prefix-affinity ring builds, counted
// where a ring is built (never on a request that finds its ring).
func registerRingMetrics(reg prometheus.Registerer, s *routing.RingStats) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_routing_prefix_rings_built_total",
			Help: "Hash rings prefix_affinity built: one per candidate set first seen (ejections, returns, discovery, reloads)."},
			func() float64 { return float64(s.Built()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_routing_prefix_ring_cache_resets_total",
			Help: "Times a prefix_affinity ring cache held 64 candidate sets and started over."},
			func() float64 { return float64(s.Resets()) }))
}
