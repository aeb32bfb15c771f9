package gateway

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// series keeps the metric children a request updates when it ends,
// resolved once per label set: finding a child by its label values hashes
// and validates every value and takes the vector's lock, on every
// request. The label sets are bounded by the config (models, backends) and
// the status codes, and the gateway never deletes a child, so a resolved
// child stays the one the registry exports.
type series struct {
	m        *telemetry.Metrics
	requests resolved[requestLabels, prometheus.Counter]
	models   resolved[string, *modelSeries]
}

type requestLabels struct {
	model, backend string
	status         int
}

// modelSeries are the per-model series of a request that reached a
// backend.
type modelSeries struct {
	ttft, duration      prometheus.Observer
	tokensIn, tokensOut prometheus.Counter
}

func newSeries(m *telemetry.Metrics) *series {
	s := &series{m: m}
	s.requests.make = func(l requestLabels) prometheus.Counter {
		return m.Requests.WithLabelValues(l.model, l.backend, strconv.Itoa(l.status))
	}
	s.models.make = func(model string) *modelSeries {
		return &modelSeries{ttft: m.TTFT.WithLabelValues(model), duration: m.Duration.WithLabelValues(model),
			tokensIn: m.Tokens.WithLabelValues(model, "in"), tokensOut: m.Tokens.WithLabelValues(model, "out")}
	}
	return s
}

// resolved is a read-mostly map of label set to child, filled on first use.
type resolved[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]V
	make func(K) V
}

func (r *resolved[K, V]) get(k K) V {
	r.mu.RLock()
	v, ok := r.m[k]
	r.mu.RUnlock()
	if ok {
		return v
	}
	v = r.make(k) // the vector returns the same child for the same labels
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[K]V)
	}
	r.m[k] = v
	r.mu.Unlock()
	return v
}
