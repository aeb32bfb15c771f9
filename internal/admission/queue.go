package admission

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Class is a priority class. Lower values are served first; the zero value
// is Interactive. Values above MaxClass are treated as MaxClass.
type Class int

const (
	Interactive Class = 0
	Batch       Class = 1
	// MaxClass is the lowest priority class the queue keeps apart.
	MaxClass Class = 7
)

func (c Class) String() string {
	switch c {
	case Interactive:
		return "interactive"
	case Batch:
		return "batch"
	}
	return fmt.Sprintf("class%d", int(c))
}

// Request describes a request asking for a slot.
type Request struct {
	Tenant   string    // API key or configured group; "" is a tenant too
	Weight   float64   // tenant's relative share; <= 0 means 1
	Class    Class     // priority class; the zero value is Interactive
	Cost     float64   // estimated tokens (see EstimateCost); <= 0 means 1
	Deadline time.Time // when the request must be granted by; zero means none
	// Latest is when a grant is no longer any use (the client's objective
	// can no longer be met), for a waiter kept at its delay-target review:
	// Deadline decides admission with a margin for the estimate's error,
	// Latest when a waiter let in is refused after all. Zero: Deadline.
	Latest time.Time
	// Spare marks work that runs only in capacity live traffic leaves
	// free: granted at once or refused with ErrNoSpare, never queued, and
	// preempted (Preempt is called) when a live request would wait. See
	// spare.go.
	Spare   bool
	Preempt func()
	// Hedge marks a spare request that races a live request's own copy
	// (the gateway's hedges): it may take the handover past the engines'
	// slots, as before QueueConfig.SpareCapacity, and a live request
	// granted there does not take it back (takeBackPastSlots), since its
	// answer may be the live client's. Only jobs are kept to the slots the
	// engines run at once (spare.go). Ignored without Spare.
	Hedge bool
	// Unmeasured marks a ticket whose hold time says nothing about how
	// fast the pool drains (a hedge, given back when its race ends): its
	// release teaches the drain estimate nothing.
	Unmeasured bool
	// Fingerprint identifies the request (tenant and body) across a
	// client's retries, for appointments (appoint.go); 0: none.
	Fingerprint uint64
	// Streams says the caller tells the ticket the request's first token
	// (Ticket.FirstToken): only such a request may go above the tenant
	// ramp's base as a probe (rampprobe.go); one that never tells would
	// leave its probe unjudged for its whole answer.
	Streams bool
	// KVNeed is the tokens the request takes of an engine's KV cache
	// (EstimateKVNeed: its prompt and its answer's bound, clipped), which
	// the tenant ramp reckons the engines' reported room for
	// (rampceiling.go); <= 0: Cost.
	KVNeed float64
	// Prompt is the request's estimated prompt tokens (bytes / 4), which
	// the tenant ramp prices against the engines' queued prefill
	// (QueueConfig.PrefillCapacity); <= 0: unknown.
	Prompt float64
	// LongPrefill marks a prompt whose own prefill is a good part of the
	// delay target at the engines' learned rate (the caller knows it):
	// any tenant's is held while the engines cannot start one more in
	// time (rampprefill.go). A request without it never asks.
	LongPrefill bool
	// Due is when the client's objective wants the request's first token
	// (zero: none): a held long prompt is judged against the time left to
	// it (rampprefill.go).
	Due time.Time
	// Slack is how much longer than a stream of its class the request's
	// client waits, because it sees nothing before its whole answer (a
	// non-streamed request: the time its answer's decode may take,
	// answerwait.go). Its delay target is longer by Slack, and its wait
	// counts toward congestion only past it. Deadline and Latest are the
	// caller's and include it. <= 0: none.
	Slack time.Duration
}

func (r Request) normalized() Request {
	if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
		r.Weight = 1
	}
	if !(r.Cost > 0) || math.IsInf(r.Cost, 0) {
		r.Cost = 1
	}
	r.Class = min(max(r.Class, Interactive), MaxClass)
	r.Slack = min(max(r.Slack, 0), maxSlack)
	return r
}

// Queue is a fair counting semaphore for one model pool: at most capacity()
// tickets are out at a time, and waiters are granted in priority-class order,
// then weighted fair order by cost across tenants. It starts no goroutine:
// grants happen in Acquire, Ticket.Release and Kick. Safe for concurrent use.
type Queue struct {
	cfg      QueueConfig
	capacity func() int
	clock    func() time.Time

	mu         sync.Mutex
	classes    [MaxClass + 1]*class
	tenants    map[string]*tenantState
	inUse      int
	queued     int
	queuedCost float64
	seq        uint64
	drain      drainEstimator
	counters   counters
	spares     []spareTicket // granted spare tickets, oldest first
	appts      appointments
	ramps      map[string]*rampState // tenants' activity (ramp.go), at most maxRamps
	parked     []*waiter             // queued requests held by their tenant's ramp, oldest first
	sums       rampSums              // the last scan of ramps, read past rampExact tenants (rampsums.go)

	// stopping: jobs takeBackPastSlots preempted whose tickets are not
	// back yet (spare.go).
	stopping int

	// rampNeed is the cost of the latest request the ramp reckoned a
	// reported room for (reportedSlots), which the stats' RampCeiling
	// shows the room for.
	rampNeed float64
	// The pool's in-use peaks in the current and previous RampWindow.
	poolPeak, poolPrevPeak int
	poolWindow             time.Time
	probe                  rampProbe  // the grant above the base in flight (rampprobe.go)
	proven                 rampProven // the most slots started promptly, remembered longer (rampproven.go)
	// resting: Rest found nothing for a Kick to do (or the queue is new)
	// and no Acquire came since; the next one sends on cfg.Wake.
	resting bool
	// serving is every ticket out (takeSlot to returnSlot), for the
	// estimate of when the next slot frees (nextFree).
	serving map[*Ticket]struct{}
	// opened: the queue no longer stands in front of its pool (Open):
	// every request is granted at once.
	opened bool
}

// tenantState is one tenant's share of the queue, for bounds and the
// over-share test. It is deleted when the tenant has nothing queued or held.
type tenantState struct {
	queued    int
	cost      float64
	inUse     int
	inUseCost float64
	// spareInUse and spareCost are the part of inUse and inUseCost that
	// spare tickets hold: preemptible work, left out of pool shares.
	spareInUse int
	spareCost  float64
	weight     float64 // of its latest request
}

// NewQueue returns an empty queue. capacity is called under the queue's
// mutex on every Acquire, Release and Kick, so it must be cheap and must not
// call back into the queue; it typically sums the usable backends' limits.
// clock is the time source (time.Now in production).
func NewQueue(cfg QueueConfig, capacity func() int, clock func() time.Time) *Queue {
	cfg = cfg.withDefaults()
	q := &Queue{cfg: cfg, capacity: capacity, clock: clock, tenants: make(map[string]*tenantState), ramps: make(map[string]*rampState),
		serving:  make(map[*Ticket]struct{}),
		drain:    newDrainEstimator(cfg.PriorSlotRate, priorHold, cfg.DrainSamples),
		counters: newCounters(), resting: true}
	for i := range q.classes {
		q.classes[i] = newClass(cfg.Targets[i])
	}
	return q
}

// Ticket is a granted slot. Release it exactly once when the request is done
// (after feeding the backend's Limiter, so the next grant sees the new limit);
// further calls do nothing. Tell it first how a request that does not
// stream ended (Ended), a stream its first token (FirstToken): only
// those count as answers for the tenant ramp.
type Ticket struct {
	q          *Queue
	tenant     string
	cost       float64
	granted    time.Time
	waited     time.Duration
	spare      bool
	unmeasured bool
	// probe: granted above the tenant ramp's base (rampprobe.go); set at
	// the grant, before the ticket leaves the queue, and never after.
	probe bool
	// streams: its request streams, so its first token is told
	// (FirstToken); level: the slots in use at its grant, itself included
	// (rampproven.go); started: a first token was told; answered: a 2xx
	// answer without events came to its stream request (Answered). Set
	// under the queue's mutex.
	streams, started, answered bool
	level                      int
	// succeeded: its request ended in success (Ended), set by the
	// goroutine that releases it.
	succeeded bool
	// takenBack: a job preempted by takeBackPastSlots, counted in
	// Queue.stopping until released. Set and read under the queue's mutex.
	takenBack bool
	released  atomic.Bool
}

// Waited is how long the request queued before it was granted (0 when it
// was granted at once), for logs and response headers.
func (t *Ticket) Waited() time.Duration {
	if t == nil {
		return 0
	}
	return t.waited
}

// Release returns the slot and grants it to the next waiter, if any.
func (t *Ticket) Release() {
	if t == nil || !t.released.CompareAndSwap(false, true) {
		return
	}
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock()
	if !t.unmeasured {
		q.drain.add(t.cost, now.Sub(t.granted))
	}
	if t.spare {
		q.forgetSpare(t)
		if t.takenBack {
			q.stopping--
		}
	} else {
		q.noteRelease(t.tenant, t.served(), now)
	}
	q.returnSlot(t)
	q.dispatch(now, q.capacity())
}

// Acquire waits for a slot. It grants at once when fewer than capacity()
// tickets are out and nobody of the same or a higher class waits. Otherwise
// it queues the request, unless a bound is reached or the estimated wait
// exceeds the time left to r.Deadline: then it returns a *Rejection at once.
// A queued request whose deadline passes anyway is refused with Deadline. If
// ctx ends first, the request leaves the queue and Acquire returns an error
// wrapping ctx.Err(); a slot granted at that same moment is given back.
func (q *Queue) Acquire(ctx context.Context, r Request) (*Ticket, error) {
	return q.AcquireWithProgress(ctx, r, Progress{})
}

// Kick grants waiters after capacity() may have grown without an Acquire or
// Release to notice (a limit raised, a backend added), and reviews every
// waiter by the queue's clock: those whose deadline has passed are refused,
// and those past their class's delay target are shed while their flow or
// class is congested, unless their tenant is light (codel.go,
// flowdelay.go). Callers run it a few times a second while the queue is
// not at rest (Rest).
func (q *Queue) Kick() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock()
	capacity := q.capacity()
	for _, c := range q.classes {
		if c.delay.on() {
			c.observeFlows(now, q.inUse < capacity)
		}
		for _, f := range append(flowHeap(nil), c.active...) {
			for _, w := range append([]*waiter(nil), f.waiters...) {
				q.review(w, now, capacity)
			}
		}
	}
	for _, w := range slices.Clone(q.parked) {
		q.review(w, now, capacity)
	}
	q.pruneRamps(now)
	q.dispatch(now, capacity)
}

// submit is Acquire's non-blocking half: a ticket, a queued waiter, or an
// error.
func (q *Queue) submit(r Request) (*Ticket, *waiter, error) {
	r = r.normalized()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wakeFromRest()
	now := q.clock()
	if q.opened && !r.Spare {
		q.counters.waited(r.Class, 0)
		return q.grant(r, r.Cost, now, 0, 0), nil, nil
	}
	capacity := q.capacity()
	q.dispatch(now, capacity)
	if r.Spare {
		return q.takeSpareOrRefuse(r, now, capacity)
	}
	q.arrive(r.Tenant, r.Weight, now)
	q.noteArrival(r, now)
	held, late := q.holds(r.Tenant, r.Streams, r.rampFit(), now, capacity)
	if late > 0 { // no engine can start it by its objective: refused now
		return nil, nil, q.refuseLateArrival(r, late, now, capacity)
	}
	// A request back at its appointment goes to the front of its tenant's
	// flow: ahead of the tenant's newer requests, not of other tenants.
	// Slots held for due appointments (reserved) are not free to the
	// others. One is this request's if it keeps its appointment, even past
	// waiters: with a slot free after dispatch, they wait only because the
	// free slots are held.
	q.appts.clock.arrive(now) // late appointments are timed by arrivals
	reserved := q.reserved(now, capacity)
	appointed := q.keepsAppointment(r.Fingerprint, now)
	free := q.inUse < capacity && (!q.waitingAtOrAbove(r.Class) || appointed && reserved > 0)
	if appointed {
		reserved = 0
	}
	if free && !held && q.inUse < capacity-reserved {
		q.classes[r.Class].drained() // a slot free, nobody ahead
		q.counters.waited(r.Class, 0)
		t := q.grant(r, r.Cost, now, 0, capacity)
		q.takeBackPastSlots(now, capacity)
		return t, nil, nil
	}
	if rej := q.admit(r); rej != nil {
		q.counters.rejected[rej.Reason]++
		q.promise(rej, r, now, capacity)
		return nil, nil, rej
	}
	if held {
		return nil, q.parkArrival(r, now, appointed), nil
	}
	w, rej := q.queueArrival(r, appointed, reserved, now, capacity)
	if rej != nil {
		return nil, nil, rej
	}
	return nil, w, nil
}

// queueArrival queues r, which found no free slot, behind the waiters of
// its class in fair order, unless the wait ahead of it does not fit before
// its deadline or under its delay bound: then it returns why not.
// reserved is the slots held for due appointments (0 when r keeps its
// own). Runs under q.mu.
func (q *Queue) queueArrival(r Request, appointed bool, reserved int, now time.Time, capacity int) (*waiter, *Rejection) {
	c := q.classes[r.Class]
	key, weight := q.flowKey(r), q.flowWeight(r)
	bound := q.arrivalBound(r, key) // before r counts as queued
	q.rearrive(c, now)              // answers whose slack ran out arrived before r
	q.seq++
	w := &waiter{req: r, cost: r.Cost, seq: q.seq, enqueued: now, ready: make(chan struct{}), appointed: appointed}
	at := c.placeFor(key, r.Cost, appointed, q.cfg.ShortFirst, now)
	w.start, w.finish = c.tagsAt(key, at, r.Cost, weight)
	// A slot held by spare work is about to be freed for this request:
	// no wait worth refusing over.
	if preempted := q.preemptYoungest(now); !preempted {
		if rej := q.refuseLongWait(w, key, at, bound, reserved, now, capacity); rej != nil {
			return nil, rej
		}
	}
	q.enqueue(key, w, at)
	if r.Slack > 0 {
		c.slackWaiters++
	}
	if len(q.parked) > 0 {
		// Slots left free behind held requests are this one's if its
		// tenant may take them.
		q.dispatch(now, capacity)
	}
	return w, nil
}

// refuseLongWait refuses waiter w, placed at tag at in flow key, when the
// wait ahead of it does not fit before its deadline or, while the tenant's
// flow or class is congested and the tenant not light (flowdelay.go),
// under bound, its delay target: refused now, not later. nil: it may
// queue. Runs under q.mu.
func (q *Queue) refuseLongWait(w *waiter, key string, at int, bound time.Duration, reserved int, now time.Time, capacity int) *Rejection {
	r := w.req
	left := maxWait
	if !r.Deadline.IsZero() {
		left = r.Deadline.Sub(now)
	}
	if bound > 0 && bound < left {
		left = bound
	}
	if left >= maxWait || q.guessOnly(capacity) {
		return nil
	}
	// Slots held for due appointments count as work ahead: a mean
	// hold each, spread over the slots.
	wait := q.waitFor(w, key, now, capacity, at)
	if free, ok := q.nextFree(now, capacity); ok && wait < maxWait {
		// The estimate's "one more slot must free" is a mean hold over
		// the slots, the same at any moment; the tickets in service say
		// better when one is about to end (nextFree). Only ever sooner.
		if mean := time.Duration(q.drain.meanHold() / float64(capacity) * float64(time.Second)); free < mean {
			wait -= mean - free
		}
	}
	if reserved > 0 && wait < maxWait {
		wait += time.Duration(float64(reserved) * q.drain.meanHold() / float64(capacity) * float64(time.Second))
	}
	if wait <= left {
		return nil
	}
	reason := Saturated
	if q.overPoolShare(r.Tenant, r.Weight, r.Cost) {
		reason = TenantOverShare
	}
	q.counters.rejected[reason]++
	q.noteRefused(r, now)
	rej := q.rejection(reason, r.Tenant, wait, left)
	if bound > 0 && left == bound {
		rej.Message = congestedMessage(reason, q.cfg.Name, r.Tenant, wait, bound)
	}
	q.promise(rej, r, now, capacity)
	return rej
}

// guessOnly says the wait estimate is the prior alone and the queue is
// configured not to refuse on it (QueueUnmeasured). With no capacity at all
// the estimate is "never", a fact, not a guess.
func (q *Queue) guessOnly(capacity int) bool {
	return q.cfg.QueueUnmeasured && !q.drain.measured && capacity > 0
}

// wait blocks a queued waiter until it is granted or refused, or ctx ends.
// It wakes itself when the waiter reaches its class's delay target and at
// its deadline, to be reviewed (see review) even if no Kick comes, and on
// p's ticks to report the waiter's place (p may be nil).
func (q *Queue) wait(ctx context.Context, w *waiter, p *Progress) (*Ticket, error) {
	var tick <-chan time.Time
	if p != nil {
		tick = p.Tick
	}
	next := q.firstLook(w)
	for {
		var timeout <-chan time.Time
		var tm *time.Timer
		if !next.IsZero() {
			tm = time.NewTimer(next.Sub(q.clock()))
			timeout = tm.C
		}
		select {
		case <-w.ready:
			stopTimer(tm)
			return w.ticket, w.err
		case <-ctx.Done():
			stopTimer(tm)
			return nil, q.abandon(w, fmt.Errorf("admission: left the queue: %w", ctx.Err()))
		case <-timeout:
			next = q.recheck(w)
		case <-tick:
			stopTimer(tm)
			q.report(w, p.Report)
		}
	}
}

// firstLook is when a new waiter is first reviewed: at its class's
// delay target, or its deadline when the class has none. Read under q.mu:
// SetConfig may change the target.
func (q *Queue) firstLook(w *waiter) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d := q.classes[w.req.Class].delay; d.on() {
		return w.due().Add(d.target)
	}
	return q.deadlineOf(w)
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// recheck reviews a waiter whose timer fired and returns when to look
// again: its deadline once it is past its delay target (zero: no deadline,
// only a Kick or a grant ends the wait), else the target.
func (q *Queue) recheck(w *waiter) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.state != waiting {
		return time.Time{} // decided; ready is closed
	}
	now := q.clock()
	q.review(w, now, q.capacity())
	if d := q.classes[w.req.Class].delay; d.on() && now.Sub(w.due()) < d.target {
		return w.due().Add(d.target)
	}
	return q.deadlineOf(w)
}

// deadlineOf is when a waiter is refused for lateness; zero for none.
func (q *Queue) deadlineOf(w *waiter) time.Time {
	d := w.req.Deadline
	if !w.req.Latest.IsZero() && w.req.Latest.After(d) {
		d = w.req.Latest
	}
	if d.IsZero() {
		return time.Time{}
	}
	return d.Add(q.cfg.Grace)
}

// review refuses a queued waiter that can no longer be served in time: its
// deadline has passed; or it reaches its class's delay target while the
// class is congested, or unable to start within the target (startsSoon),
// its tenant not light (shed); or at that target the wait still ahead of
// it, re-estimated, no longer fits before its deadline (refused now rather
// than at the deadline). A waiter kept at its target review is committed:
// it is not shed later, only refused if its deadline passes after all. So
// refusals after queueing come at the target, unless the waiter was about
// to start and then did not. Runs under q.mu.
func (q *Queue) review(w *waiter, now time.Time, capacity int) {
	if w.state != waiting {
		return
	}
	if q.expired(w, now) {
		q.dequeue(w)
		q.refuse(w, q.deadlineRejection(w, now))
		return
	}
	if w.parked { // bounded by its deadline, a long prompt by its objective
		q.refuseLateHeld(w, now, capacity)
		return
	}
	c := q.classes[w.req.Class]
	if !c.delay.on() || now.Sub(q.dueOf(w)) < c.delay.target {
		return
	}
	if w.reviewed {
		return // kept at its target review: refused only at its deadline
	}
	w.reviewed = true
	q.rearrive(c, now)
	if counted, ok := w.counted(now, c.delay.target); ok {
		c.observe(q.flowKey(w.req), now, counted)
	}
	if q.sheds(w, now, 0) || !q.startsSoon(w, now, capacity) {
		q.noteRefused(w.req, now)
		q.dequeue(w)
		q.refuse(w, q.shedRejection(w, now, capacity))
		return
	}
	// Kept waiters are refused only at their deadline, past the target:
	// keep one only with a margin, as the arrival estimate had (a mean
	// whose tail runs about 1.5x longer).
	if w.req.Deadline.IsZero() {
		return
	}
	ahead, left := q.waitLeft(w, now, capacity), w.req.Deadline.Sub(now)
	if withMargin(ahead) > left {
		q.dequeue(w)
		q.refuse(w, q.targetReviewRejection(w, now, ahead, left))
	}
}

// withMargin is a wait estimate with the margin a kept waiter must fit
// with (a mean whose tail runs about 1.5x longer); maxWait stays maxWait.
func withMargin(d time.Duration) time.Duration {
	if d >= maxWait/3*2 {
		return maxWait
	}
	return d * 3 / 2
}

// abandon takes a waiter whose client went away out of the queue. If it was
// granted in the meantime, the slot goes back without counting as served.
func (q *Queue) abandon(w *waiter, err error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch w.state {
	case waiting:
		q.dequeue(w)
		w.state = refused
		w.err = err
		close(w.ready)
	case granted:
		w.ticket.released.Store(true)
		q.returnSlot(w.ticket)
		q.dispatch(q.clock(), q.capacity())
	case refused:
		return w.err // refused first; the refusal is the better answer
	}
	q.counters.cancelled++
	return err
}

// dispatch grants waiters while slots are free. Waiters whose deadline has
// passed are refused instead of granted: their client has given up on them;
// so are waiters past the delay target of a congested class (shed from the
// head: see codel.go).
func (q *Queue) dispatch(now time.Time, capacity int) {
	if q.inUse < capacity {
		q.unparkFreed(now, capacity)
	}
	for q.inUse < capacity && q.queued > 0 {
		// Answers whose slack ran out arrive afresh first: that changes
		// the heads parkHeldHeads checks (slackorder.go).
		for _, c := range q.classes {
			q.rearrive(c, now)
		}
		if q.parkHeldHeads(now, capacity); q.scheduled() == 0 {
			return // every waiter is held by its tenant's ramp
		}
		var w *waiter
		if q.inUse < capacity-q.reserved(now, capacity) {
			w = q.next(now, capacity)
		} else if w = q.appointedHead(); w == nil {
			return // the free slots are held for appointments due now
		}
		if q.expired(w, now) {
			q.refuse(w, q.deadlineRejection(w, now))
			continue
		}
		if !w.reviewed && q.sheds(w, now, w.cost) { // shed from the head
			q.refuse(w, q.shedRejection(w, now, capacity))
			continue
		}
		waited := now.Sub(w.enqueued)
		if c := q.classes[w.req.Class]; c.delay.on() {
			if counted, ok := w.counted(now, c.delay.target); ok {
				c.observe(q.flowKey(w.req), now, counted)
			}
		}
		w.ticket = q.grant(w.req, w.cost, now, waited, capacity)
		w.state = granted
		q.counters.waited(w.req.Class, waited)
		close(w.ready)
	}
}

func (q *Queue) expired(w *waiter, now time.Time) bool {
	d := q.deadlineOf(w)
	return !d.IsZero() && now.After(d)
}
