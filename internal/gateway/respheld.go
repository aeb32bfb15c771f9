package gateway

import (
	"container/list"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// heldWrites are the owner writes Redis could not take (bypassed, or
// failing for an outage), held by the writer until it is back and then
// replayed: without them, another replica could not route a continuation
// of a response made during the outage (its lookup would miss, and the
// pool's policy pick a backend that may not hold it), long after Redis
// returned.
//
// Bounded: beyond max the oldest is dropped (its id is then found as one
// never written: by asking the backends, locate.go and followup.go). A write
// older than the ids' TTL is dropped when met: its key would have expired
// in Redis by now, and the map forgets it too. Keyed by Redis key, so a
// newer write to a key (a DELETE after the create) replaces the older one.
// Only the writer goroutine uses it; n is read by the gauge.
type heldWrites struct {
	max   int
	ttl   time.Duration
	order *list.List               // of sharedWrite, oldest first
	byKey map[string]*list.Element // into order
	n     atomic.Int64

	droppedBound, droppedExpired prometheus.Counter
}

func newHeldWrites(max int, ttl time.Duration, droppedBound, droppedExpired prometheus.Counter) *heldWrites {
	return &heldWrites{max: max, ttl: ttl, order: list.New(), byKey: make(map[string]*list.Element),
		droppedBound: droppedBound, droppedExpired: droppedExpired}
}

func (h *heldWrites) len() int { return h.order.Len() }

// hold adds w as the newest, replacing a held write to the same key, and
// drops the oldest beyond the bound.
func (h *heldWrites) hold(w sharedWrite) {
	if e, ok := h.byKey[w.key]; ok {
		h.order.Remove(e)
	}
	h.byKey[w.key] = h.order.PushBack(w)
	for h.order.Len() > h.max {
		h.remove(h.order.Front())
		h.droppedBound.Inc()
	}
	h.n.Store(int64(h.order.Len()))
}

// take removes and returns the oldest n writes still within the TTL at
// now, dropping the expired ones it meets.
func (h *heldWrites) take(now time.Time, n int) []sharedWrite {
	var ws []sharedWrite
	for e := h.order.Front(); e != nil && len(ws) < n; e = h.order.Front() {
		w := h.remove(e)
		if now.Sub(w.at) >= h.ttl {
			h.droppedExpired.Inc()
			continue
		}
		ws = append(ws, w)
	}
	h.n.Store(int64(h.order.Len()))
	return ws
}

// putBack returns writes take gave out and Redis did not take, as the
// oldest, in their order. A key held anew since (none: only the writer
// holds) keeps the newer write.
func (h *heldWrites) putBack(ws []sharedWrite) {
	for i := len(ws) - 1; i >= 0; i-- {
		if _, ok := h.byKey[ws[i].key]; ok {
			continue
		}
		h.byKey[ws[i].key] = h.order.PushFront(ws[i])
	}
	for h.order.Len() > h.max {
		h.remove(h.order.Front())
		h.droppedBound.Inc()
	}
	h.n.Store(int64(h.order.Len()))
}

func (h *heldWrites) remove(e *list.Element) sharedWrite {
	w := h.order.Remove(e).(sharedWrite)
	delete(h.byKey, w.key)
	return w
}
