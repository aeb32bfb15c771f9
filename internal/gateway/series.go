package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// series keeps the metric children a request updates when it ends,
// resolved once per label set: finding a child by its label values hashes
// and validates every value and takes the vector's lock, on every
// request. The label sets are bounded by the config (models, backends) and
// the status codes, folded by codeOf: a backend may answer any three
// digits, and each would otherwise be a series per model and backend. Backends come and go (discovery, reloads), so the
// request counters of backends that left are deleted when a runtime is
// swapped in (prune); the others are never deleted, so a resolved child
// stays the one the registry exports.
type series struct {
	m        *telemetry.Metrics
	requests resolved[requestLabels, prometheus.Counter]
	models   resolved[string, *modelSeries]
}

type requestLabels struct {
	model, backend string
	status         int // codeOf the answer's status
}

// Status classes and the rest, as codeOf folds them (below 0: never a
// status).
const (
	codeOther = -1
	codeClass = -100 // codeClass*c is the class cxx, c in 1..5
)

// codeOf is the code label's key for status: the status itself when
// net/http names it (the registered codes, ~60) or the gateway answers it
// (499: the client left; 0: nothing answered), else its class ("4xx", so
// a `code=~"4.."` query still finds it), or "other" past 599.
func codeOf(status int) int {
	switch {
	case status == http.StatusOK: // most answers: StatusText's switch not walked
		return status
	case status == 0 || status == 499 || http.StatusText(status) != "":
		return status
	case status >= 100 && status <= 599:
		return codeClass * (status / 100)
	}
	return codeOther
}

// codeLabel is the label value of codeOf's key.
func codeLabel(code int) string {
	switch {
	case code >= 0:
		return strconv.Itoa(code)
	case code == codeOther:
		return "other"
	}
	return strconv.Itoa(code/codeClass) + "xx"
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
		return m.Requests.WithLabelValues(l.model, l.backend, codeLabel(l.status))
	}
	s.models.make = func(model string) *modelSeries {
		return &modelSeries{ttft: m.TTFT.WithLabelValues(model), duration: m.Duration.WithLabelValues(model),
			tokensIn: m.Tokens.WithLabelValues(model, "in"), tokensOut: m.Tokens.WithLabelValues(model, "out")}
	}
	return s
}

// resolved is a read-mostly map of label set to child, filled on first use.
// last is the entry found last: requests in a row mostly share their
// labels (one model, one backend, one status), and comparing a label set
// costs a request far less than hashing it under the read lock (~250
// instructions for requestLabels, by callgrind).
type resolved[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]*child[K, V]
	last atomic.Pointer[child[K, V]]
	make func(K) V
	gen  uint64 // prunes so far, under mu (add)
}

type child[K comparable, V any] struct {
	k K
	v V
}

func (r *resolved[K, V]) get(k K) V {
	if c := r.last.Load(); c != nil && c.k == k {
		return c.v
	}
	// last is stored under the lock that prune holds to clear
	// it: stored after the unlock, a child found before a prune would be
	// put back aside once the prune had cleared it, and every request of
	// its labels counted on it, unexported, until another label set came.
	r.mu.RLock()
	c := r.m[k]
	if c != nil {
		r.last.Store(c)
	}
	gen := r.gen
	r.mu.RUnlock()
	if c == nil {
		c = r.add(k, gen)
	}
	return c.v
}

// add makes k's child and keeps it, unless a prune ran since gen (the
// generation get saw): the child made may be one the prune deleted from
// its vector, and kept it would count unexported for the life of the
// process if the reload after added its model or backend back. make runs
// outside the lock: it takes the vector's.
func (r *resolved[K, V]) add(k K, gen uint64) *child[K, V] {
	for {
		v := r.make(k) // the vector returns the same child for the same labels
		r.mu.Lock()
		if c := r.m[k]; c != nil {
			r.last.Store(c)
			r.mu.Unlock()
			return c
		}
		if r.gen != gen { // a prune ran while make did: make again
			gen = r.gen
			r.mu.Unlock()
			continue
		}
		if r.m == nil {
			r.m = make(map[K]*child[K, V])
		}
		c := &child[K, V]{k: k, v: v}
		r.m[k] = c
		r.last.Store(c)
		r.mu.Unlock()
		return c
	}
}

// prune deletes the request counters of the backends for which
// keepBackend is false and of the models for which keepModel is false,
// forgets their resolved children (the per-model ones too), and deletes
// every series of a removed model (telemetry.Metrics.KeepModels): every
// backend a discovery source ever reported, and every model a reload
// removed, would otherwise keep its series for the life of the process.
// A resolved child of a removed model must go with its series: the
// model added back would count on a child the registry no longer
// exports. Runs on a runtime swap, off the request path. A request still
// draining on a removed backend or model may add its series back; the
// next swap deletes it again.
func (s *series) prune(keepModel, keepBackend func(string) bool) {
	// The series first, then the children: a child a draining request
	// resolves in between makes its series again, and the next swap
	// deletes both; the other order could leave a resolved child whose
	// series is gone, counting unseen once its model is back.
	s.m.KeepModels(keepModel)
	r := &s.requests
	r.mu.Lock()
	r.gen++
	for k := range r.m {
		switch {
		case k.model != "" && !keepModel(k.model):
			delete(r.m, k) // its series: KeepModels, above
		case k.backend != "" && !keepBackend(k.backend):
			delete(r.m, k)
			s.m.Requests.DeleteLabelValues(k.model, k.backend, codeLabel(k.status))
		}
	}
	r.last.Store(nil)
	r.mu.Unlock()
	ms := &s.models
	ms.mu.Lock()
	ms.gen++
	for model := range ms.m {
		if model != "" && !keepModel(model) {
			delete(ms.m, model)
		}
	}
	ms.last.Store(nil)
	ms.mu.Unlock()
}
