package admission

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the queues of a gateway as Prometheus metrics, labelled
// by pool (model). It reads the queues at scrape time, so it is registered
// once, on the caller's own registry, and follows pools added or removed by
// a config reload through the pools function.
type Collector struct {
	pools func() map[string]*Queue

	waiting, waitingCost, inUse, capacity, drain  *prometheus.Desc
	delayTarget, congested, appointments, held    *prometheus.Desc
	waits, rejections, cancelled, preempted       *prometheus.Desc
	preemptedHeld                                 *prometheus.Desc
	rampHeld, rampHeldTotal, ramping              *prometheus.Desc
	rampBase, rampProven, rampCeiling, rampProbes *prometheus.Desc
}

// NewCollector returns a collector over the queues pools returns, keyed by
// model name. pools is called on every scrape.
func NewCollector(pools func() map[string]*Queue) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"model"}, labels...), nil)
	}
	return &Collector{
		pools:        pools,
		waiting:      d("sluice_queue_waiting", "Requests waiting in the gateway queue, by priority class.", "class"),
		waitingCost:  d("sluice_queue_waiting_cost", "Estimated tokens waiting in the gateway queue, by priority class.", "class"),
		inUse:        d("sluice_queue_in_use", "Slots granted and not yet released."),
		capacity:     d("sluice_queue_capacity", "Slots the pool allows now (sum of backend concurrency limits)."),
		drain:        d("sluice_queue_drain_rate", "Measured service rate at the current capacity, estimated tokens per second."),
		delayTarget:  d("sluice_queue_delay_target_seconds", "Controlled-delay target of the queue, by priority class: under sustained overload waits converge to it.", "class"),
		appointments: d("sluice_queue_appointments", "Refused requests holding a Retry-After appointment (bounded at 16384 per model)."),
		held:         d("sluice_queue_held_slots", "Free slots held for Retry-After appointments due now: only requests back at their appointment may take them (scaled by the share of appointments recently kept)."),
		congested:    d("sluice_queue_congested", "1 while some tenant's waits in the class have stayed above its delay target for an interval (that tenant's arrivals that would wait longer are refused and its waiters reaching the target shed, unless it holds at most half its fair share).", "class"),
		waits: d("sluice_queue_wait_seconds", "Time from arrival to grant of granted requests (0 when granted at once), by priority class.",
			"class"),
		rejections: d("sluice_queue_rejections_total", "Requests the queue refused, by reason: tenant_over_share, tenant_queue_full (429); saturated, queue_full, deadline, shed (503).", "reason"),
		cancelled:  d("sluice_queue_cancelled_total", "Requests whose client went away while they waited."),
		preempted: d("sluice_queue_preempted_total", "Spare work (queued jobs, batch requests, hedges) stopped to free its slot for a live request that found the pool full, "+
			"or a job stopped for a live request granted past the slots the engines run at once (into the handover); a job runs again later, its partial work lost."),
		preemptedHeld: d("sluice_queue_preempted_seconds_total", "Slot-time the preempted spare work had held its slots when stopped (the youngest ticket is taken): "+
			"the work thrown away; over sluice_queue_preempted_total, the mean age of a preempted ticket."),
		rampHeld: d("sluice_queue_ramp_held", "Queued requests held by their tenant's ramp: the tenant became busy while others were active and holds its allowance, "+
			"with no free slot beyond the other active tenants' recent peaks (bounded by the queue's max_queued)."),
		rampHeldTotal: d("sluice_queue_ramp_held_total", "Requests held by their tenant's ramp at least once."),
		ramping:       d("sluice_queue_ramping_tenants", "Active tenants ramping up: busy since another tenant was active, and not yet at the capacity (at most 4096 remembered per model)."),
		rampBase: d("sluice_queue_ramp_base", "Slots a ramping tenant's allowance and free slots are reckoned from: the backends' static slots or the pool's recent in-use peak, "+
			"grown by probes whose first token came promptly, made only beside tenants on one slot at a time (0 with the ramp off)."),
		rampProven: d("sluice_queue_ramp_proven", "The most slots in use at which a stream started promptly within the last 10 to 20 minutes (a late start forgets what is above it): "+
			"a ramping tenant's free slots may reach it, less each other active tenant's margin above its recent peak (0 with the ramp off)."),
		rampCeiling: d("sluice_queue_ramp_ceiling", "The requests the backends' engines say they can run at once for the pool now: their reported batch bound (load_metrics.batch_bound_metrics) less other clients' running, "+
			"from fresh scrapes with nothing queued, never more than their KV cache holds (for the latest request the ramp judged, by its own tokens where the engine reports the cache's size); "+
			"while reported it stands in ramp_proven's place, 0 included (0 also: none reported, or the ramp off)."),
		rampProbes: d("sluice_queue_ramp_probes_total", "Grants above the ramp's base, one at a time, by their first token: prompt (the slot counted in the base) or late (probing paused for admission.tenant_ramp).", "outcome"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.waitingCost, c.inUse, c.capacity, c.drain, c.delayTarget, c.congested, c.appointments, c.held,
		c.waits, c.rejections, c.cancelled, c.preempted, c.preemptedHeld, c.rampHeld, c.rampHeldTotal, c.ramping, c.rampBase, c.rampProven, c.rampCeiling, c.rampProbes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	pools := c.pools()
	for _, model := range slices.Sorted(maps.Keys(pools)) {
		q := pools[model]
		s := q.Stats()
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{model}, labels...)...)
		}
		gauge(c.inUse, float64(s.InUse))
		gauge(c.capacity, float64(s.Capacity))
		gauge(c.drain, s.DrainRate)
		gauge(c.appointments, float64(s.Appointments))
		gauge(c.held, float64(s.HeldSlots))
		gauge(c.rampHeld, float64(s.RampHeld))
		gauge(c.ramping, float64(s.Ramping))
		ch <- prometheus.MustNewConstMetric(c.rampHeldTotal, prometheus.CounterValue, float64(s.RampHeldTotal), model)
		gauge(c.rampBase, float64(s.RampBase))
		gauge(c.rampProven, float64(s.RampProven))
		gauge(c.rampCeiling, float64(s.RampCeiling))
		ch <- prometheus.MustNewConstMetric(c.rampProbes, prometheus.CounterValue, float64(s.RampProbes), model, "prompt")
		ch <- prometheus.MustNewConstMetric(c.rampProbes, prometheus.CounterValue, float64(s.RampProbesLate), model, "late")
		byClass := make(map[string]ClassStats, len(s.Classes))
		for _, cs := range s.Classes {
			byClass[cs.Class] = cs
		}
		for _, cl := range []Class{Interactive, Batch} { // always present, so dashboards see zeros
			if _, ok := byClass[cl.String()]; !ok {
				byClass[cl.String()] = ClassStats{Class: cl.String()}
			}
		}
		for name, cs := range byClass {
			gauge(c.waiting, float64(cs.Queued), name)
			gauge(c.waitingCost, cs.QueuedCost, name)
			gauge(c.delayTarget, cs.DelayTarget.Seconds(), name)
			congested := 0.0
			if cs.Congested {
				congested = 1
			}
			gauge(c.congested, congested, name)
		}
		for cl, h := range q.waitHistograms() {
			if _, ok := byClass[Class(cl).String()]; !ok && h.count == 0 {
				continue
			}
			buckets := make(map[float64]uint64, len(waitBuckets))
			var cum uint64
			for i, ub := range waitBuckets {
				cum += h.counts[i]
				buckets[ub] = cum
			}
			ch <- prometheus.MustNewConstHistogram(c.waits, h.count, h.sum, buckets, model, Class(cl).String())
		}
		for r := range numReasons {
			reason := Reason(r).String()
			ch <- prometheus.MustNewConstMetric(c.rejections, prometheus.CounterValue, float64(s.Rejected[reason]), model, reason)
		}
		ch <- prometheus.MustNewConstMetric(c.cancelled, prometheus.CounterValue, float64(s.Cancelled), model)
		ch <- prometheus.MustNewConstMetric(c.preempted, prometheus.CounterValue, float64(q.Preempted()), model)
		ch <- prometheus.MustNewConstMetric(c.preemptedHeld, prometheus.CounterValue, q.PreemptedHeld(), model)
	}
}
