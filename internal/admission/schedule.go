package admission

import (
	"container/heap"
	"slices"
	"time"
)

// The schedule is one queue per priority class. Inside a class, waiters are
// grouped in flows, one per tenant (or a single flow when fairness is off,
// which makes the class a FIFO), and served by self-clocked fair queuing
// (SCFQ, Golestani 1994) on cost:
//
//	start  = max(class virtual time, the flow's last finish tag)
//	finish = start + cost / weight
//
// The waiter with the lowest finish tag goes first, and the class's virtual
// time becomes that tag. A backlogged tenant's tags advance by cost/weight per
// request, so over any busy period each backlogged tenant is granted cost in
// proportion to its weight, whatever its request sizes, within one maximum
// request of the ideal (fluid) share. A tenant that was idle starts at the
// current virtual time: it gets no credit for idleness.

// waiter is one queued request.
type waiter struct {
	req       Request // normalized
	cost      float64
	seq       uint64 // arrival order; breaks tag ties deterministically
	start     float64
	finish    float64
	enqueued  time.Time
	flow      *flow
	reviewed  bool // past its class's delay target and reviewed once (under the queue's mutex)
	appointed bool // came back at its appointment: ahead of its flow's other waiters
	parked    bool // held by its tenant's ramp, outside the schedule (ramp.go)
	heldOnce  bool // parked at least once, for the held counter
	rearrived bool // its slack ran out: tagged afresh then, or kept its place (slackorder.go)

	// Set under the queue's mutex before ready is closed.
	ready  chan struct{}
	state  waiterState
	ticket *Ticket
	err    error
}

type waiterState int

const (
	waiting waiterState = iota
	granted
	refused
)

// flow is one tenant's FIFO of waiters within a class. Tags increase along it.
type flow struct {
	key        string
	waiters    []*waiter
	cost       float64 // queued cost
	lastFinish float64
	heapIdx    int
}

// class is the schedule of one priority class.
type class struct {
	vtime  float64
	flows  map[string]*flow
	active flowHeap // flows with waiters, by head finish tag
	n      int
	cost   float64
	// credit is the starvation guard's balance: cost this class may take
	// ahead of higher classes, earned while they were served and it waited.
	credit float64
	// delay holds the class's controlled-delay target and interval
	// (codel.go); delays is each flow's state, by flow key (flowdelay.go).
	delay  codel
	delays map[string]*codel
	// slackWaiters bounds how many waiters with slack may still have to
	// arrive afresh when it runs out (rearrive); 0: none, nothing to scan.
	slackWaiters int
	// streams counts the class's arrivals without slack and their
	// refusals, decayed (slackorder.go: refusing).
	streams refusalShare
}

func newClass(target time.Duration) *class {
	return &class{flows: make(map[string]*flow), delay: newCodel(target), delays: make(map[string]*codel)}
}

// tags returns the start and finish tags a request would get.
func (c *class) tags(key string, cost, weight float64) (start, finish float64) {
	start = c.vtime
	if f := c.flows[key]; f != nil {
		start = max(start, f.lastFinish)
	}
	return start, start + cost/weight
}

func (c *class) push(key string, w *waiter) {
	f := c.flows[key]
	if f == nil {
		f = &flow{key: key, heapIdx: -1}
		c.flows[key] = f
	}
	w.flow = f
	f.waiters = append(f.waiters, w)
	f.cost += w.cost
	f.lastFinish = w.finish
	c.n++
	c.cost += w.cost
	if f.heapIdx < 0 {
		heap.Push(&c.active, f)
	}
}

// placeFor is where in its flow an arriving request of the given cost
// goes: behind the flow's appointed waiters when it keeps an appointment
// (first come, first served among them); else at the back, unless
// shortFirst > 0: then ahead of the longer waiters at the back that have
// waited less than shortFirst (short requests first within the tenant's
// share, with bounded waiting for long ones), never ahead of an appointed
// one.
func (c *class) placeFor(key string, cost float64, appointed bool, shortFirst time.Duration, now time.Time) int {
	f := c.flows[key]
	if f == nil {
		return 0
	}
	front := f.appointed()
	if appointed {
		return front
	}
	i := len(f.waiters)
	for shortFirst > 0 && i > front {
		o := f.waiters[i-1]
		if o.cost <= cost || now.Sub(o.enqueued) >= shortFirst {
			break
		}
		i--
	}
	return i
}

// tagsAt returns the tags a request placed at index at of its flow gets:
// the start of the waiter it goes ahead of, or the ordinary tags at the
// back.
func (c *class) tagsAt(key string, at int, cost, weight float64) (start, finish float64) {
	if f := c.flows[key]; f != nil && at < len(f.waiters) {
		start = f.waiters[at].start
		return start, start + cost/weight
	}
	return c.tags(key, cost, weight)
}

// appointed is how many waiters at the front of the flow kept an
// appointment: the place of the next one (first come, first served among
// them).
func (f *flow) appointed() int {
	i := 0
	for i < len(f.waiters) && f.waiters[i].appointed {
		i++
	}
	return i
}

// insertAt puts w (tagged by tagsAt) at index at of its flow and moves the
// waiters behind it back by w's share, so the flow's tags still increase
// along it and the tenant's total share is unchanged.
func (c *class) insertAt(key string, w *waiter, at int) {
	f := c.flows[key]
	if f == nil || at >= len(f.waiters) {
		c.push(key, w)
		return
	}
	shift := w.finish - w.start
	for _, o := range f.waiters[at:] {
		o.start += shift
		o.finish += shift
	}
	f.lastFinish += shift
	w.flow = f
	f.waiters = slices.Insert(f.waiters, at, w)
	f.cost += w.cost
	c.n++
	c.cost += w.cost
	heap.Fix(&c.active, f.heapIdx)
}

// head is the next waiter by finish tag, or nil.
func (c *class) head() *waiter {
	if len(c.active) == 0 {
		return nil
	}
	return c.active[0].waiters[0]
}

// remove takes w out wherever it is. When w was its flow's last request the
// flow's tag rolls back to w's start, so a tenant whose request was cancelled
// or refused is not charged for it.
func (c *class) remove(w *waiter) {
	f := w.flow
	i := 0
	for i < len(f.waiters) && f.waiters[i] != w {
		i++
	}
	if i == len(f.waiters) {
		return
	}
	if i == len(f.waiters)-1 && w.finish == f.lastFinish {
		f.lastFinish = w.start
	}
	f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
	f.cost -= w.cost
	c.n--
	c.cost -= w.cost
	if c.n == 0 {
		c.cost = 0 // no float residue
		c.credit = 0
	}
	switch {
	case len(f.waiters) == 0:
		heap.Remove(&c.active, f.heapIdx)
		delete(c.flows, f.key) // its lastFinish <= vtime now: nothing to remember
	case i == 0:
		heap.Fix(&c.active, f.heapIdx)
	}
}

// costAhead is the queued cost this class serves before a request placed
// at index at of flow key with the given finish tag: the flow's waiters
// before it, and every other flow's waiters with a lower or equal tag,
// except those skip reports (nil: none; slackorder.go).
func (c *class) costAhead(key string, finish float64, at int, skip func(*waiter) bool) float64 {
	var sum float64
	for _, f := range c.active {
		if f.key == key {
			for _, w := range f.waiters[:min(at, len(f.waiters))] {
				if skip == nil || !skip(w) {
					sum += w.cost
				}
			}
			continue
		}
		for _, w := range f.waiters {
			if w.finish > finish {
				break
			}
			if skip == nil || !skip(w) {
				sum += w.cost
			}
		}
	}
	return sum
}

// next removes and returns the waiter to serve at now: the head of the
// highest class with waiters (or a waiter of it without slack ahead of a
// head within its own: nextIn), unless a lower class has earned enough
// starvation-guard credit to pay for the waiter it would serve. The
// answers whose slack ran out have arrived afresh (dispatch: rearrive).
func (q *Queue) next(now time.Time, capacity int) *waiter {
	pick := -1
	var w *waiter
	for i, c := range q.classes {
		if c.n == 0 {
			continue
		}
		if pick < 0 {
			pick = i
			continue
		}
		// The waiter the class would serve, which is not its head while
		// the head yields within its slack: the guard pays for that one.
		if h := q.nextIn(c, now, capacity); c.credit >= h.cost {
			c.credit -= h.cost
			pick, w = i, h
			break
		}
	}
	if w == nil {
		w = q.nextIn(q.classes[pick], now, capacity)
	}
	q.classes[pick].take(w)
	q.unqueue(w)
	if share := q.cfg.MinShare; share > 0 {
		for _, c := range q.classes[pick+1:] {
			if c.n > 0 {
				c.credit += w.cost * share / (1 - share)
			}
		}
	}
	return w
}

// flowHeap orders active flows by their head's finish tag, then arrival.
type flowHeap []*flow

func (h flowHeap) Len() int { return len(h) }
func (h flowHeap) Less(i, j int) bool {
	a, b := h[i].waiters[0], h[j].waiters[0]
	if a.finish != b.finish {
		return a.finish < b.finish
	}
	return a.seq < b.seq
}
func (h flowHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *flowHeap) Push(x any) {
	f := x.(*flow)
	f.heapIdx = len(*h)
	*h = append(*h, f)
}
func (h *flowHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	f.heapIdx = -1
	return f
}
