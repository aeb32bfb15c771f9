package admission

import (
	"encoding/json"
	"time"
)

// waitBuckets are the wait-time histogram's upper bounds in seconds: from
// "granted at once" to the batch class's default wait (max_wait_batch, 5
// minutes), so that a batch p99 reads as a time, not as the last finite
// bound (128 s, below which batch waits were once all lumped into +Inf).
var waitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128, 300}

// histogram is a minimal Prometheus-style histogram kept under the queue's
// mutex; the Collector turns it into a const metric at scrape time.
type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(waitBuckets) && v > waitBuckets[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.count++
}

// counters are the queue's lifetime event counts.
type counters struct {
	rejected  [numReasons]uint64
	cancelled uint64
	preempted uint64 // spare tickets taken back by live traffic
	// preemptedHeld is the seconds those tickets had held their slots
	preemptedHeld float64
	held          uint64 // requests held by their tenant's ramp at least once
	// probes above the ramp's base whose first token came promptly, or
	// late (rampprobe.go)
	probesPrompt, probesLate uint64
	waits                    [MaxClass + 1]histogram // per class, of granted requests
}

func newCounters() counters {
	var c counters
	for i := range c.waits {
		c.waits[i].counts = make([]uint64, len(waitBuckets)+1)
	}
	return c
}

func (c *counters) waited(class Class, d time.Duration) {
	c.waits[class].observe(d.Seconds())
}

// Stats is a snapshot of a queue for /status and tests.
type Stats struct {
	InUse      int     `json:"in_use"`
	Capacity   int     `json:"capacity"`
	Queued     int     `json:"queued"`
	QueuedCost float64 `json:"queued_cost"`
	// DrainRate is the measured service rate at the current capacity, in
	// cost units per second: what wait estimates divide by.
	DrainRate float64                `json:"drain_rate"`
	Classes   []ClassStats           `json:"classes"` // classes with waiters or grants, by priority
	Tenants   map[string]TenantStats `json:"tenants"` // tenants with requests queued or in flight
	Granted   uint64                 `json:"granted"`
	Rejected  map[string]uint64      `json:"rejected"` // by Reason.String()
	Cancelled uint64                 `json:"cancelled"`
	// Appointments is how many refused requests hold an appointment
	// (appoint.go), at most maxAppointments.
	Appointments int `json:"appointments"`
	// HeldSlots is how many of Capacity's slots are held now for
	// appointments due (reserved): free slots only requests keeping an
	// appointment may take.
	HeldSlots int `json:"held_slots"`
	// RampHeld is how many of the queued requests wait for their
	// tenant's ramp (ramp.go); RampHeldTotal how many ever did; Ramping
	// how many active tenants are ramping.
	RampHeld      int    `json:"ramp_held"`
	RampHeldTotal uint64 `json:"ramp_held_total"`
	Ramping       int    `json:"ramping_tenants"`
	// RampBase is the slots a ramping tenant's allowance is reckoned from
	// now (rampBase); RampProbes and RampProbesLate count the grants above
	// it whose first token came promptly (each grew it by one) or late
	// (rampprobe.go). RampProven is the most slots in use at which a
	// stream started promptly within the last 10-20 minutes: a ramping
	// tenant's free slots may reach it, less the others' margins
	// (rampproven.go).
	RampBase       int    `json:"ramp_base"`
	RampProbes     uint64 `json:"ramp_probes"`
	RampProbesLate uint64 `json:"ramp_probes_late"`
	RampProven     int    `json:"ramp_proven"`
	// RampCeiling is the engines' reported room for the pool's requests
	// (their batch bound less other clients' running, from fresh
	// readings with nothing queued; where the engines report their KV
	// cache's size, for a request the size of the latest one the ramp
	// judged), which stands in RampProven's place while reported, 0
	// included; 0 also when none is (rampceiling.go).
	RampCeiling int `json:"ramp_ceiling"`
}

// ClassStats is one priority class's share of Stats.
type ClassStats struct {
	Class      string  `json:"class"`
	Queued     int     `json:"queued"`
	QueuedCost float64 `json:"queued_cost"`
	Granted    uint64  `json:"granted"`
	// DelayTarget is the class's controlled-delay target (0 = off);
	// Congested whether some tenant's waits have stayed above it for an
	// interval (flowdelay.go). In JSON the target is delay_target_ms
	// (MarshalJSON), in milliseconds as /status's other times are.
	DelayTarget time.Duration `json:"-"`
	Congested   bool          `json:"congested"`
}

// MarshalJSON writes the stats with the delay target in milliseconds
// (delay_target_ms); it was nanoseconds under delay_target, beside
// /status's *_ms fields.
func (c ClassStats) MarshalJSON() ([]byte, error) {
	type fields ClassStats // without this method
	return json.Marshal(struct {
		fields
		DelayTargetMS float64 `json:"delay_target_ms"`
	}{fields(c), float64(c.DelayTarget) / float64(time.Millisecond)})
}

// TenantStats is one tenant's share of Stats.
type TenantStats struct {
	Queued     int     `json:"queued"`
	QueuedCost float64 `json:"queued_cost"`
	InUse      int     `json:"in_use"`
	// Waiting breaks Queued down by class, with how long the tenant's
	// longest waiter of that class has waited so far: the queue time an
	// operator watches during a burst (the histograms only see waits that
	// ended). Absent when nothing of the tenant is queued.
	Waiting []TenantClassWait `json:"waiting,omitempty"`
}

// TenantClassWait is one tenant's queued requests of one class.
type TenantClassWait struct {
	Class  string `json:"class"`
	Queued int    `json:"queued"`
	// OldestWait is how long its longest-waiting request has waited.
	OldestWait time.Duration `json:"oldest_wait_ns"`
}

// Stats returns a consistent snapshot.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	capacity := q.capacity()
	s := Stats{InUse: q.inUse, Capacity: capacity, Queued: q.queued, QueuedCost: q.queuedCost,
		DrainRate: q.drain.perSlot() * float64(max(capacity, 0)),
		Tenants:   make(map[string]TenantStats, len(q.tenants)),
		Rejected:  make(map[string]uint64, numReasons), Cancelled: q.counters.cancelled,
		Appointments: len(q.appts.at), RampHeld: len(q.parked), RampHeldTotal: q.counters.held,
		RampProbes: q.counters.probesPrompt, RampProbesLate: q.counters.probesLate}
	now := q.clock()
	if q.rampOn() {
		s.RampBase = q.rampBase(now, capacity)
		s.RampProven = q.provenSlots(now)
		s.RampCeiling, _ = q.reportedSlots(q.rampNeed)
	}
	s.HeldSlots = q.reserved(now, capacity)
	// A ramp is only updated by its tenant's requests: one that went
	// quiet keeps its flag until a scan forgets it, so only the active
	// count (TestQuietTenantStopsCountingAsRamping).
	for name, rs := range q.ramps {
		if rs.ramping && q.active(name, rs, now) {
			s.Ramping++
		}
	}
	for i, c := range q.classes {
		granted := q.counters.waits[i].count
		s.Granted += granted
		if c.n > 0 || granted > 0 || c.delay.on() && Class(i) <= Batch {
			s.Classes = append(s.Classes, ClassStats{Class: Class(i).String(), Queued: c.n, QueuedCost: c.cost, Granted: granted,
				DelayTarget: c.delay.target, Congested: c.congested()})
		}
	}
	for name, ts := range q.tenants {
		s.Tenants[name] = TenantStats{Queued: ts.queued, QueuedCost: ts.cost, InUse: ts.inUse}
	}
	q.tenantWaitsLocked(s.Tenants)
	for r, n := range q.counters.rejected {
		s.Rejected[Reason(r).String()] = n
	}
	return s
}

// waitHistograms copies the per-class wait histograms for the Collector.
func (q *Queue) waitHistograms() [MaxClass + 1]histogram {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [MaxClass + 1]histogram
	for i, h := range q.counters.waits {
		out[i] = histogram{counts: append([]uint64(nil), h.counts...), sum: h.sum, count: h.count}
	}
	return out
}

// Spare is how many more jobs (spare requests other than hedges) the queue
// would grant at once without anyone waiting: 0 while any request is
// queued (work that only fills spare capacity must never take a slot a
// waiting request needs), and none past the slots the engines run at once
// less the reserve (QueueConfig.SpareCapacity).
func (q *Queue) Spare() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued > 0 {
		return 0
	}
	return max(q.jobRoom(q.capacity())-q.inUse, 0)
}

// DelayTarget is class c's controlled-delay target (0: off). SetConfig
// may change it, so it is read under the queue's lock.
func (q *Queue) DelayTarget(c Class) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cfg.Targets[min(max(c, Interactive), MaxClass)]
}

// Waiting is how many requests wait in the queue now: a cheap read for
// the scaling signals, which call a completion "at capacity" while any do.
// Requests held by their tenant's ramp do not count: they wait for the
// ramp, not for capacity.
func (q *Queue) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.scheduled()
}

// tenantWaitsLocked fills each tenant's Waiting: one walk over the queued
// requests, run per /status read (about once a second per dashboard), not
// per request.
func (q *Queue) tenantWaitsLocked(tenants map[string]TenantStats) {
	now := q.clock()
	for i, c := range q.classes {
		if c.n == 0 {
			continue
		}
		type agg struct {
			n      int
			oldest time.Time
		}
		byTenant := map[string]*agg{}
		for _, f := range c.flows {
			for _, w := range f.waiters {
				a := byTenant[w.req.Tenant]
				if a == nil {
					a = &agg{oldest: w.enqueued}
					byTenant[w.req.Tenant] = a
				}
				a.n++
				if w.enqueued.Before(a.oldest) {
					a.oldest = w.enqueued
				}
			}
		}
		for name, a := range byTenant {
			ts := tenants[name]
			ts.Waiting = append(ts.Waiting, TenantClassWait{Class: Class(i).String(), Queued: a.n, OldestWait: max(now.Sub(a.oldest), 0)})
			tenants[name] = ts
		}
	}
}
