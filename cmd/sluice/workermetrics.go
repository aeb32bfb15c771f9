package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// A `sluice worker`'s metrics listener (--metrics-listen): /metrics and
// nothing else, serving the job store's metrics this process owns (its
// executions, retries, dead letters, answers too large, webhook
// outcomes, its tracker's batches and lines, the queue's depth) and the
// Go and process collectors, as the gateway's admin listener serves its
// own. Before, a worker registered none: what its jobs did showed only
// in its log.
//
// Off by default, as Envoy's admin and nginx's stub_status are until
// configured: several workers may run on one host, and a fixed default
// port would fail the second's start (or leave it unscraped), and a
// port nobody asked for is one more to audit. It has no token gate: it
// serves counters only (no tenant, no URL, no credential; no /status,
// pprof or job routes, which are why the gateway's admin listener has
// one), so it answers whoever reaches the address it is given: bind it
// to loopback, or to an address only the scraper reaches.

// workerMetricsConns bounds the listener's connections (a scraper needs
// one); past it a connection is closed at accept.
const workerMetricsConns = 16

// listenWorkerMetrics binds --metrics-listen before anything else
// starts, as serve binds its listeners: a port already taken fails the
// start at once, naming the flag. nil for "off".
func listenWorkerMetrics(addr string) (net.Listener, error) {
	if addr == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// net's error names the address; this names where it was set.
		return nil, fmt.Errorf("worker metrics listen (--metrics-listen): %w", err)
	}
	return ln, nil
}

// newWorkerRegistry is the worker's registry: the Go and process
// collectors; the job store registers its own on it (jobs.Options
// .Registerer).
func newWorkerRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// workerMetricsHandler serves g at /metrics, GET and HEAD, never cached;
// any other path is a 404 naming the one it serves. A scraper that takes
// no bytes of the answer for send (netguard.AdminSendTimeout, as the
// gateway's admin /metrics) is cut: before, one that never read an
// answer larger than the sockets' buffers held its slot (of 16) and its
// goroutine until the worker stopped.
func workerMetricsHandler(g prometheus.Gatherer, send time.Duration) http.Handler {
	prom := netguard.StallCut(promhttp.HandlerFor(g, promhttp.HandlerOpts{}), send)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path != "/metrics" {
			openai.WriteError(w, openai.NotFound("unknown_url", "Unknown URL: "+openai.Echo(r.Method+" "+r.URL.Path)+" (the worker's metrics listener serves /metrics only)"))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if !openai.ReadOnly(w, r) {
			return
		}
		prom.ServeHTTP(w, r)
	})
}

// serveWorkerMetrics serves h on ln until the returned func closes it
// (the worker's last step: scrapes are answered through its stop).
func serveWorkerMetrics(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	guarded := netguard.NewListener(ln, netguard.ConnLimits{Total: workerMetricsConns}, nil)
	// The gateway's admin listener's server (timeouts, header bound).
	srv := app.NewAdminServer(h, guarded, log)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(guarded) }()
	log.Info("sluice worker metrics listening", "addr", ln.Addr().String(), "path", "/metrics")
	return func() {
		srv.Close()
		<-done
	}
}
