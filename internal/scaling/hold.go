package scaling

import (
	"sync"
	"time"
)

// Hold makes desired backends fall slowly: At returns the highest value
// offered for a model over the last window, so a scaler following it adds
// servers at once and removes them only after the need has stayed lower
// for a whole window (as the Kubernetes HPA's scale-down stabilisation
// does, here in the signal so KEDA and plain HPA users get it alike). The
// value offered now is always within the maximum, so the held signal is
// never below what the current demand and queue need. Memory per model
// is bounded by the number of distinct values in the window that are
// higher than every later one (a monotonic queue), at most one per call.
// Safe for concurrent use; time comes from the caller.
type Hold struct {
	mu     sync.Mutex
	models map[string]*heldSeries
}

type heldPoint struct {
	at    time.Time
	value float64
}

// heldSeries is a monotonic queue: values strictly decreasing from front
// to back, each the highest offered since its time.
type heldSeries struct{ points []heldPoint }

// NewHold returns an empty Hold.
func NewHold() *Hold { return &Hold{models: map[string]*heldSeries{}} }

// At offers model's value v at now and returns the highest offered over
// (now-window, now]; window <= 0 returns v and forgets the model.
func (h *Hold) At(model string, now time.Time, v float64, window time.Duration) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if window <= 0 {
		delete(h.models, model)
		return v
	}
	s := h.models[model]
	if s == nil {
		s = &heldSeries{}
		h.models[model] = s
	}
	pts := s.points
	for len(pts) > 0 && pts[len(pts)-1].value <= v {
		pts = pts[:len(pts)-1]
	}
	pts = append(pts, heldPoint{at: now, value: v})
	drop := 0
	for drop < len(pts)-1 && !pts[drop].at.After(now.Add(-window)) {
		drop++
	}
	if drop > 0 {
		pts = append(pts[:0], pts[drop:]...)
	}
	s.points = pts
	return pts[0].value
}

// Keep forgets the models keep rejects (removed by a reload).
func (h *Hold) Keep(keep func(model string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m := range h.models {
		if !keep(m) {
			delete(h.models, m)
		}
	}
}
