package scaling

import (
	"container/heap"
	"time"
)

// Demand is what clients want served, not how often they ask. A client
// refused with Retry-After (or an SDK's own back-off) sends the same
// request again, once per refusal: counted as arrivals, 24 clients
// retrying into 6 slots read as 16 requests a second for a pool that
// served 8, and a pool refusing with short waits read as dozens of
// backends (docs/RELIABILITY.md, "Forecasting and scaling signals"). So a
// refused request's client is awaited: a request that comes back with the
// same key (the gateway's: its Idempotency-Key, else its tenant, path and
// body, as the admission queue's appointments) before the refusal's
// Retry-After and a grace have passed is a retry, not new demand
// (Returned). While it is away its client is waiting for the pool as
// surely as one in the queue: Reading.Awaited counts them, and Plan's
// in-flight floor counts them with the requests in service (Little's law
// over the clients, not the attempts).

// AwaitGrace is how long after its Retry-After a refused request's client
// is still awaited: the OpenAI SDKs come back at the advised time, or on
// their own back-off (0.5 s doubling to 8 s) without one; a client not
// back by then gave up and is no longer demand.
const AwaitGrace = 5 * time.Second

// maxAwaited bounds the refused requests awaited per model; past it a
// refusal is not remembered and its retry counts as an arrival (the
// signal over-states, as before, rather than the memory growing).
const maxAwaited = 1 << 16

// awaited is a model's refused requests whose clients are expected back,
// by key, each until its expiry; the heap finds the expired ones.
type awaited struct {
	until map[uint64]time.Time
	exp   expiries
}

type expiry struct {
	key   uint64
	until time.Time
}

type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].until.Before(e[j].until) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// prune forgets the clients not back by now. A heap entry whose key was
// taken or awaited again since is stale and only dropped.
func (a *awaited) prune(now time.Time) {
	for len(a.exp) > 0 && !a.exp[0].until.After(now) {
		e := heap.Pop(&a.exp).(expiry)
		if u, ok := a.until[e.key]; ok && u.Equal(e.until) {
			delete(a.until, e.key)
		}
	}
}

func (a *awaited) add(key uint64, now, until time.Time) {
	a.prune(now)
	if a.until == nil {
		a.until = map[uint64]time.Time{}
	}
	if _, ok := a.until[key]; !ok && len(a.until) >= maxAwaited || len(a.exp) >= 2*maxAwaited {
		return
	}
	a.until[key] = until
	heap.Push(&a.exp, expiry{key: key, until: until})
}

func (a *awaited) take(key uint64, now time.Time) bool {
	a.prune(now)
	if _, ok := a.until[key]; !ok {
		return false
	}
	delete(a.until, key)
	return true
}

// Await notes that a request of the model with key (never 0) was refused
// at now and its client is expected back until `until` (the refusal's
// Retry-After plus AwaitGrace): its return is no new demand, and while
// away it counts as a client waiting for the pool (Reading.Awaited).
func (m *Meter) Await(model string, key uint64, now, until time.Time) {
	if key == 0 || !until.After(now) {
		return
	}
	mm, _ := m.model(model)
	mm.mu.Lock()
	mm.awaited.add(key, now, until)
	mm.mu.Unlock()
	for u := until.UnixNano(); ; {
		last := m.awaitedUntil.Load()
		if u <= last || m.awaitedUntil.CompareAndSwap(last, u) {
			return
		}
	}
}

// Awaiting reports whether any refused request may still be awaited at
// now (of any model): until the last Await's expiry has passed. Only then
// is a request's retry key worth computing (a hash of its body): a pool
// that refuses nothing pays one atomic load per request for this.
func (m *Meter) Awaiting(now time.Time) bool {
	return now.UnixNano() < m.awaitedUntil.Load()
}

// Returned reports whether a request of the model with key is the retry
// of a refused one still awaited (Await), and stops awaiting it: the
// caller does not count it as an arrival, for the scaling signals or the
// forecast.
func (m *Meter) Returned(model string, key uint64, now time.Time) bool {
	if key == 0 {
		return false
	}
	mm, _ := m.model(model)
	mm.mu.Lock()
	defer mm.mu.Unlock()
	return mm.awaited.take(key, now)
}
