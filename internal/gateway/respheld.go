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
// Held per Redis Cluster master (the one serving the key's slot when it
// was held; "" for a single Redis, or before the slot map is known), so
// that the writes of a master still down never stand in front of those
// of a master that is back: each master's are replayed oldest first on
// their own. Writes to different keys need no order between them, and a
// key has one write held at most.
//
// Bounded: beyond max the oldest of all is dropped (its id is then found
// as one never written: by asking the backends, locate.go and
// followup.go). A write older than the ids' TTL is dropped when met: its
// key would have expired in Redis by now, and the map forgets it too.
// Keyed by Redis key, so a newer write to a key (a DELETE after the
// create) replaces the older one. Only the writer goroutine uses it; n is
// read by the gauge.
type heldWrites struct {
	max    int
	ttl    time.Duration
	order  *list.List // of *heldWrite, oldest first: the bound drops from here
	byKey  map[string]*heldWrite
	byNode map[string]*list.List // of *heldWrite, oldest first, per master
	n      atomic.Int64

	droppedBound, droppedExpired prometheus.Counter
}

// heldWrite is a held write, in both of heldWrites' orders.
type heldWrite struct {
	w             sharedWrite
	node          string
	inOrder, inNo *list.Element
}

func newHeldWrites(max int, ttl time.Duration, droppedBound, droppedExpired prometheus.Counter) *heldWrites {
	return &heldWrites{max: max, ttl: ttl, order: list.New(), byKey: make(map[string]*heldWrite),
		byNode: make(map[string]*list.List), droppedBound: droppedBound, droppedExpired: droppedExpired}
}

func (h *heldWrites) len() int { return h.order.Len() }

// hold adds w, for master node, as the newest, replacing a held write to
// the same key, and drops the oldest beyond the bound.
func (h *heldWrites) hold(w sharedWrite, node string) {
	h.forget(w.key)
	hw := &heldWrite{w: w, node: node}
	hw.inOrder = h.order.PushBack(hw)
	hw.inNo = h.nodeList(node).PushBack(hw)
	h.byKey[w.key] = hw
	for h.order.Len() > h.max {
		h.remove(h.order.Front().Value.(*heldWrite))
		h.droppedBound.Inc()
	}
	h.n.Store(int64(h.order.Len()))
}

// forget drops the write held for key, if any: a newer one to the key is
// being written, and the older must never land after it.
func (h *heldWrites) forget(key string) {
	if hw, ok := h.byKey[key]; ok {
		h.remove(hw)
		h.n.Store(int64(h.order.Len()))
	}
}

// nodes are the masters writes are held for.
func (h *heldWrites) nodes() []string {
	ns := make([]string, 0, len(h.byNode))
	for n := range h.byNode {
		ns = append(ns, n)
	}
	return ns
}

// oldest is node's oldest n writes still within the TTL at now, dropping
// the expired ones it meets; they stay held until settled.
func (h *heldWrites) oldest(now time.Time, node string, n int) []*heldWrite {
	l := h.byNode[node]
	if l == nil {
		return nil
	}
	var hws []*heldWrite
	for e := l.Front(); e != nil && len(hws) < n; {
		hw := e.Value.(*heldWrite)
		e = e.Next()
		if now.Sub(hw.w.at) >= h.ttl {
			h.remove(hw)
			h.droppedExpired.Inc()
			continue
		}
		hws = append(hws, hw)
	}
	h.n.Store(int64(h.order.Len()))
	return hws
}

// settle drops the writes oldest gave out that Redis took (or answered
// with an error reply, or that expired unsent): all but those whose key
// is in failed. A failed one whose key another master serves now (a
// failover, or held before the map was known) moves to that master's
// writes: it must not stand in front of node's. nodeOf is a key's master
// now. stayed is how many failed and stayed with their master.
func (h *heldWrites) settle(hws []*heldWrite, failed map[string]bool, nodeOf func(key string) string) (stayed int) {
	for _, hw := range hws {
		if h.byKey[hw.w.key] != hw {
			continue // replaced meanwhile (none: only the writer holds)
		}
		if !failed[hw.w.key] {
			h.remove(hw)
			continue
		}
		now := nodeOf(hw.w.key)
		if now == hw.node {
			stayed++
			continue
		}
		h.nodeList(hw.node).Remove(hw.inNo)
		h.dropEmpty(hw.node)
		hw.node = now
		hw.inNo = h.nodeList(now).PushBack(hw)
	}
	h.n.Store(int64(h.order.Len()))
	return stayed
}

func (h *heldWrites) nodeList(node string) *list.List {
	l := h.byNode[node]
	if l == nil {
		l = list.New()
		h.byNode[node] = l
	}
	return l
}

func (h *heldWrites) dropEmpty(node string) {
	if l := h.byNode[node]; l != nil && l.Len() == 0 {
		delete(h.byNode, node)
	}
}

func (h *heldWrites) remove(hw *heldWrite) {
	h.order.Remove(hw.inOrder)
	h.byNode[hw.node].Remove(hw.inNo)
	h.dropEmpty(hw.node)
	delete(h.byKey, hw.w.key)
}
