package batchapi

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/openai"
)

// maxCreateWaiting bounds the POST /v1/batches requests waiting for the
// create gate; past it a creation is refused 503 at once.
const maxCreateWaiting = 64

// createGate bounds the bytes of batch input files that POST /v1/batches
// reads into memory at once. A creation holds its whole input file's
// requests (bodies, ids) until the batch is enqueued, about twice the
// file's size in the heap, and costs the client a request of a hundred
// bytes: without a bound, N concurrent creations naming one 200 MiB file
// held N times that. The gate admits creations first come, first served,
// each weighing its file's stored size (capped at the gate's capacity, so
// one file of any size gets through alone); the others wait, at most
// maxCreateWaiting of them, as long as their client does.
type createGate struct {
	mu      sync.Mutex
	limit   int64
	held    int64
	waiting []*createWaiter // first come, first served

	heldGauge    prometheus.Gauge
	waitingGauge prometheus.Gauge
	refused      prometheus.Counter
}

type createWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes are taken for the waiter
}

func newCreateGate(limit int64, reg prometheus.Registerer) *createGate {
	g := &createGate{
		limit: limit,
		heldGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_batch_create_bytes",
			Help: "Bytes of batch input files being read into new batches (POST /v1/batches); bounded by queue.max_file_bytes."}),
		waitingGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_batch_create_waiting",
			Help: "POST /v1/batches requests waiting for their input file to be read (at most 64)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_batch_create_refused_total",
			Help: "POST /v1/batches requests refused 503 because 64 others were already waiting to read their input files."}),
	}
	if reg != nil {
		reg.MustRegister(g.heldGauge, g.waitingGauge, g.refused)
	}
	return g
}

// errCreateBusy refuses a creation when maxCreateWaiting others wait.
var errCreateBusy = &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "batch_create_busy",
	Message:    "the gateway is reading as many batch input files as its memory bound allows and as many creations wait; retry shortly",
	RetryAfter: time.Second}

// acquire takes n bytes (at most the limit), waiting behind earlier
// creations until they fit or ctx ends. It returns the release.
func (g *createGate) acquire(ctx context.Context, n int64) (func(), error) {
	n = max(1, min(n, g.limit))
	g.mu.Lock()
	if len(g.waiting) == 0 && g.held+n <= g.limit {
		g.take(n)
		g.mu.Unlock()
		return func() { g.release(n) }, nil
	}
	if len(g.waiting) >= maxCreateWaiting {
		g.mu.Unlock()
		g.refused.Inc()
		return nil, errCreateBusy
	}
	w := &createWaiter{n: n, ready: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	g.waitingGauge.Set(float64(len(g.waiting)))
	g.mu.Unlock()
	select {
	case <-w.ready:
		return func() { g.release(n) }, nil
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-w.ready: // taken for it meanwhile: give the bytes back
			g.mu.Unlock()
			g.release(n)
		default:
			g.remove(w)
			g.grant() // a later, smaller waiter may fit now
			g.mu.Unlock()
		}
		return nil, ctx.Err()
	}
}

func (g *createGate) release(n int64) {
	g.mu.Lock()
	g.held -= n
	g.heldGauge.Set(float64(g.held))
	g.grant()
	g.mu.Unlock()
}

// take and grant hold g.mu.
func (g *createGate) take(n int64) {
	g.held += n
	g.heldGauge.Set(float64(g.held))
}

// grant admits waiters in order while the first fits.
func (g *createGate) grant() {
	for len(g.waiting) > 0 && g.held+g.waiting[0].n <= g.limit {
		w := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.take(w.n)
		close(w.ready)
	}
	g.waitingGauge.Set(float64(len(g.waiting)))
}

func (g *createGate) remove(w *createWaiter) {
	for i, x := range g.waiting {
		if x == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			return
		}
	}
}
