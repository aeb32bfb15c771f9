package admission

import (
	"slices"
	"time"
)

// A tenant that becomes busy while other tenants are active ramps up: it
// cannot take the slots the active tenants are using. Fair queueing only
// orders the queue; it cannot give back slots already granted, and a grant
// holds its slot for the whole answer. Without the ramp, a newly busy
// tenant's burst of long requests took every slot an active tenant freed
// between two of its requests (a steady client is never waiting at the
// instant its own slot frees), for the seconds each long answer lasts:
// the chaos suite's slow-readers burst (four new tenants, 28 answers of
// 256 tokens) held all 24 slots for ~5.6 s while the well-behaved tenant,
// half the pool, waited behind it.
//
// The rule, per pool, for a tenant that became busy (its first request after
// RampWindow of quiet) while another tenant was active (held a slot,
// waited, or did so within RampWindow):
//
//   - it may hold its allowance: half its weighted fair share among the
//     active tenants (at least one slot) of the ramp's base, plus one
//     more slot per request of its own that has completed since, so its
//     allowance doubles each round trip, as TCP's slow start; fairness
//     converges to the fair queue's once its answers come back;
//   - beyond its allowance it may take only a slot nobody active is
//     using: a free slot within the base that is not one of the others'
//     recent peaks (the most each held in the last one to two
//     RampWindows), so the slots a steady tenant frees between its
//     requests stay its own;
//   - the base is the slots the backends are known to have (static
//     limits) or, when more, the most the pool held in the last one to
//     two RampWindows, at most the capacity (rampBase): the capacity, a
//     sum of adaptive limits, can stand well above the slots the backends
//     have, while a static limit is stated, so with static limits a held
//     request never waits while slots stand free that no active tenant
//     used recently;
//   - held only by a full base, one streaming request at a time may go
//     above it (a probe, rampprobe.go): once the engine starts it
//     promptly its slot counts in the base, so on adaptive limits the
//     base grows a slot per first token up to what the engines start,
//     as TCP's slow start grows by acks; but only while the whole base
//     is in use and the other active tenants are owed no headroom above
//     it (rampmargin.go): each at its recent peak, one slot at a time;
//   - beside any tenants, its free slots may reach the most slots at
//     which a stream started promptly within the last 10-20 minutes, less
//     each other active tenant's margin above its recent peak
//     (rampproven.go): what the engines proved earlier, without probes;
//   - its ramp ends once it is alone among the active tenants (the pool
//     is work-conserving for a single tenant) or its allowance reaches the
//     capacity.
//
// A held request waits outside the fair schedule (parked: it neither
// delays nor counts ahead of others' requests in wait estimates), bounded
// by its deadline, and joins the schedule once its tenant may take a slot
// again. A tenant active before the others never ramps: established
// tenants share by fair queueing as before. Spare work (jobs) neither
// ramps nor counts as activity.

// DefaultRampWindow is the activity window of QueueConfig.RampWindow.
const DefaultRampWindow = 2 * time.Second

// maxRamps bounds the tenants whose activity a queue remembers; past it a
// new tenant is not remembered (it does not ramp), after the entries of
// inactive tenants are dropped.
const maxRamps = 4096

// rampState is one tenant's activity in a pool.
type rampState struct {
	weight      float64
	ramping     bool // became busy while others were active; allowance applies
	completions int  // its requests completed since it became busy
	// peak and prevPeak are the most slots it held in the current and the
	// previous window (RampWindow each), from window on.
	peak, prevPeak int
	window         time.Time
	lastBusy       time.Time // last time it held a slot or waited
	// Its share of the scan sumScan of the tenants (rampsums.go), when
	// that is the last one.
	sumScan   uint64
	sumWeight float64
	sumKept   int
	sumMargin int
}

// rampOn reports whether the ramp is configured.
func (q *Queue) rampOn() bool { return q.cfg.RampWindow > 0 }

// inUseOf is tenant's granted slots.
func (q *Queue) inUseOf(tenant string) int {
	if ts := q.tenants[tenant]; ts != nil {
		return ts.inUse
	}
	return 0
}

// rotate moves rs's peak window forward to now.
func (q *Queue) rotate(rs *rampState, tenant string, now time.Time) {
	w := q.cfg.RampWindow
	if el := now.Sub(rs.window); el >= w {
		if el >= 2*w {
			rs.prevPeak = 0
		} else {
			rs.prevPeak = rs.peak
		}
		rs.peak = q.inUseOf(tenant)
		rs.window = now
	}
}

// active reports whether tenant is busy or was within RampWindow.
func (q *Queue) active(tenant string, rs *rampState, now time.Time) bool {
	if ts := q.tenants[tenant]; ts != nil && (ts.inUse > 0 || ts.queued > 0) {
		return true
	}
	return now.Sub(rs.lastBusy) <= q.cfg.RampWindow
}

// arrive records a live request of tenant arriving; a tenant that becomes
// busy while another is active starts ramping.
func (q *Queue) arrive(tenant string, weight float64, now time.Time) {
	if !q.rampOn() {
		return
	}
	rs := q.ramps[tenant]
	if rs != nil && !q.active(tenant, rs, now) {
		delete(q.ramps, tenant) // quiet for a window: busy afresh
		rs = nil
	}
	if rs == nil {
		if len(q.ramps) >= maxRamps {
			q.rampScan(now) // forgets the inactive, at most rampRescans times a window
			if len(q.ramps) >= maxRamps {
				return
			}
		}
		rs = &rampState{window: now}
		rs.ramping = q.othersActive(tenant, now)
		q.ramps[tenant] = rs
	}
	rs.weight = weight
	rs.lastBusy = now
}

func (q *Queue) othersActive(tenant string, now time.Time) bool {
	if len(q.ramps) > rampExact {
		_, _, _, others := q.othersSums(q.ramps[tenant], now)
		return others
	}
	for name, o := range q.ramps {
		if name != tenant && q.active(name, o, now) {
			return true
		}
	}
	return false
}

// noteGrant records a live slot granted to tenant.
func (q *Queue) noteGrant(tenant string, now time.Time) {
	if !q.rampOn() {
		return
	}
	rs := q.ramps[tenant]
	if rs != nil {
		q.rotate(rs, tenant, now)
		rs.peak = max(rs.peak, q.inUseOf(tenant))
		rs.lastBusy = now
	}
	q.notePoolInUse(now)
}

// noteRelease records a live slot of tenant given back; served says its
// request was answered (Ticket.served), which alone counts as a completion
// that grows the allowance: a stream that failed or was cancelled before
// its first token, or whose first event was an error, and a request that
// does not stream not told it ended in a whole 2xx answer (Ticket.Ended:
// a 5xx, a timeout, a cancel), show no slot the engines serve, as a loss
// is no ack to TCP's slow start.
func (q *Queue) noteRelease(tenant string, served bool, now time.Time) {
	if rs := q.ramps[tenant]; rs != nil {
		if served {
			rs.completions++
		}
		rs.lastBusy = now
	}
}

// pruneRamps forgets the tenants no longer active.
func (q *Queue) pruneRamps(now time.Time) {
	for name, rs := range q.ramps {
		if !q.active(name, rs, now) {
			delete(q.ramps, name)
		}
	}
}

// holds reports whether tenant's next request must wait for its ramp: it
// is ramping, holds its allowance, no free slot is left beyond the other
// active tenants' recent peaks, and no probe above the base may go (a
// request that streams may probe: rampprobe.go), or, any tenant's, it is
// a long prompt the engines cannot start within the delay target
// (prefillFull). It ends a ramp that is over. fit is the request's KV need (Request.KVNeed), which the engines'
// reported room is reckoned for (rampceiling.go), and its prompt, which
// their queued prefill is priced with (rampprefill.go).
// late > 0: held, a long prompt no engine can start by its objective:
// refuse it now, with that Retry-After (prefillFull).
func (q *Queue) holds(tenant string, streams bool, fit rampFit, now time.Time, capacity int) (held bool, late time.Duration) {
	if beyond, probe := q.beyondBase(tenant, fit, now, capacity); beyond {
		return !(streams && probe && q.mayProbe(now)), 0
	}
	return q.prefillFull(fit, now, capacity)
}

// beyondBase reports whether tenant's next grant would go beyond what its
// ramp lets it hold within the base: it is ramping, holds its allowance,
// and no free slot is left within the base beyond the other active
// tenants' recent peaks. probe says a grant above the base may test a
// slot: the base all in use, the others at their recent peaks with no
// margin owed (rampmargin.go), a slot of the capacity free. It ends a
// ramp that is over.
func (q *Queue) beyondBase(tenant string, fit rampFit, now time.Time, capacity int) (beyond, probe bool) {
	rs := q.ramps[tenant]
	if rs == nil || !rs.ramping {
		return false, false
	}
	weights, others, kept, margin := rs.weight, false, 0, 0
	if len(q.ramps) > rampExact {
		w, k, m, o := q.othersSums(rs, now)
		weights, kept, margin, others = weights+w, k, m, o
	} else {
		for name, o := range q.ramps {
			if name == tenant || !q.active(name, o, now) {
				continue
			}
			q.rotate(o, name, now)
			others = true
			weights += o.weight
			peak := max(o.peak, o.prevPeak)
			kept += max(peak-q.inUseOf(name), 0)
			margin += rampMargin(peak)
		}
	}
	recent := q.rampBase(now, capacity)
	allowance := max(int(float64(recent)*rs.weight/weights/2), 1) + rs.completions
	if !others || allowance >= capacity {
		rs.ramping = false
		return false, false
	}
	if q.inUseOf(tenant) < allowance {
		return false, false
	}
	// Beyond the recent peak, the slots the engines started promptly
	// within the longer memory, or the bound they report now
	// (rampceiling.go), less the others' margins (rampproven.go).
	reported, reportedOK := q.reportedSlots(fit.need)
	base := q.provenBase(recent, margin, reported, reportedOK, now, capacity)
	// Never more than the engines can start within the delay target now,
	// by their queued prefill (rampprefill.go): time, so not less the
	// others' margins, and below the recent base too.
	prefill := q.prefillFit(fit, now).Slots
	if prefill > 0 {
		base = min(base, prefill)
	}
	// A probe tests the slot above the base, so only with the whole base
	// in use (a grant while a proven slot is free takes, in the engines,
	// one kept for the others), and only while the others need no
	// headroom beyond their recent peaks: no slot of those peaks unused,
	// no margin (rampmargin.go); never past a reported bound or the
	// prefill's.
	probe = q.inUse >= base && kept+margin == 0 && q.inUse < capacity && (!reportedOK || q.inUse < reported) &&
		(prefill == 0 || q.inUse < prefill)
	return q.inUse+1 > base-kept, probe
}

// rampBase is the part of the capacity a ramping tenant's allowance and
// spare slots are reckoned from: the slots the backends are known to have
// (KnownCapacity: static limits) or, when more, the most the pool held in
// the last one to two windows, a probe above it counted once its first
// token came promptly (rampprobe.go); never more than the capacity.
//
// An adaptive limit is not known capacity: the capacity is then a sum of
// adaptive limits, which grow while nothing pushes back and can stand well
// above what the backends can start (the chaos pool read 36-54 on 24 slots
// in calm phases); a burst reckoned from it, or from half of it, overfilled
// the engines. Beyond the recent peak such a pool grows by probes, one
// grant above the base at a time, each adding its slot once the engine
// started it promptly, as TCP's slow start grows its window by acks; and
// through the ramping tenant's own completions.
//
// A static limit is what the operator says the backend has. Reckoned from
// the peak alone, a pool whose active tenants held few slots kept the rest
// from a newcomer until its own long answers came back: one tenant on one
// slot of eight, the newcomer's first request answering for a minute, its
// second held that minute with six slots free. From the known slots, the
// slots nobody active used recently are free to it at once, and the
// others' recent peaks stay theirs.
func (q *Queue) rampBase(now time.Time, capacity int) int {
	q.rotatePool(now)
	known := 0
	if q.cfg.KnownCapacity != nil {
		known = q.cfg.KnownCapacity()
	}
	return min(capacity, max(q.poolPeak, q.poolPrevPeak, known, 1))
}

// rotatePool moves the pool's in-use peak window forward to now.
func (q *Queue) rotatePool(now time.Time) {
	w := q.cfg.RampWindow
	if el := now.Sub(q.poolWindow); el >= w {
		if el >= 2*w {
			q.poolPrevPeak = 0
		} else {
			q.poolPrevPeak = q.poolPeak
		}
		q.poolPeak = q.inUse
		q.poolWindow = now
	}
}

// parkArrival queues an arrival whose tenant is held: it waits outside
// the schedule, bounded by its deadline.
func (q *Queue) parkArrival(r Request, now time.Time, appointed bool) *waiter {
	q.seq++
	w := &waiter{req: r, cost: r.Cost, seq: q.seq, enqueued: now, ready: make(chan struct{}), appointed: appointed}
	q.account(w)
	q.park(w)
	return w
}

// park holds w outside the schedule; its accounting as queued stays.
func (q *Queue) park(w *waiter) {
	if !w.heldOnce {
		w.heldOnce = true
		q.counters.held++
	}
	w.parked = true
	w.flow = nil
	q.parked = append(q.parked, w)
}

// unparkFreed moves the parked waiters of tenants that may take a slot
// again back into the schedule, in arrival order, freshly tagged (a held
// request gets no credit for its wait, as an idle flow gets none).
func (q *Queue) unparkFreed(now time.Time, capacity int) {
	if len(q.parked) != 0 {
		q.unparkParked(now, capacity)
	}
}

// unparkParked is unparkFreed with waiters parked. Its frame (~850 bytes:
// the map of decisions is on the stack) is apart from the check, which
// runs at every grant: a stream's hedge slot is granted from under the
// relay's frames, where those bytes grew the held stream's goroutine
// stack past 8 KiB (BenchmarkHeldStreamStack).
//
//go:noinline
func (q *Queue) unparkParked(now time.Time, capacity int) {
	type key struct {
		tenant  string
		streams bool
		fit     rampFit // the reported room and the prefill's are the engines' for a request this size
	}
	type decision struct {
		held bool
		late time.Duration
	}
	decided := map[key]decision{}
	kept := q.parked[:0]
	var late []*waiter
	for _, w := range q.parked {
		k := key{w.req.Tenant, w.req.Streams, w.req.rampFit()}
		d, ok := decided[k]
		if !ok {
			d.held, d.late = q.holds(w.req.Tenant, w.req.Streams, k.fit, now, capacity)
			decided[k] = d
		}
		if d.held {
			kept = append(kept, w)
			if d.late > 0 {
				late = append(late, w)
			}
			continue
		}
		w.parked = false
		c := q.classes[w.req.Class]
		key := q.flowKey(w.req)
		w.start, w.finish = c.tags(key, w.cost, q.flowWeight(w.req))
		c.push(key, w)
	}
	clear(q.parked[len(kept):])
	q.parked = kept
	for _, w := range late { // no engine can start it by its objective
		q.refuseHeldLate(w, now)
	}
}

// parkHeldHeads parks each class's head while its tenant is held, so the
// next grant goes to the first waiter that may take a slot.
func (q *Queue) parkHeldHeads(now time.Time, capacity int) {
	if len(q.ramps) == 0 && q.cfg.PrefillCapacity == nil {
		return
	}
	for _, c := range q.classes {
		for h := c.head(); h != nil && q.headHeld(h, now, capacity); h = c.head() {
			c.remove(h)
			q.park(h)
		}
	}
}

// headHeld reports whether the head h is held (parkHeldHeads); it parks a
// long prompt no engine can start by its objective too, refused at the
// next look at the parked (review, unparkParked).
func (q *Queue) headHeld(h *waiter, now time.Time, capacity int) bool {
	held, _ := q.holds(h.req.Tenant, h.req.Streams, h.req.rampFit(), now, capacity)
	return held
}

// unpark takes a parked waiter out of the parked list (it leaves the
// queue: granted elsewhere, refused or abandoned).
func (q *Queue) unpark(w *waiter) {
	if i := slices.Index(q.parked, w); i >= 0 {
		q.parked = slices.Delete(q.parked, i, i+1)
	}
	w.parked = false
}

// scheduled is how many waiters are in the schedule (not parked).
func (q *Queue) scheduled() int {
	return q.queued - len(q.parked)
}
