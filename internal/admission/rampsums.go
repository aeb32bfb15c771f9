package admission

import "time"

// A ramping tenant's hold is judged against the other active tenants: the
// sum of their weights and of the slots of their recent peaks they are not
// using (holds). Summed over the remembered tenants on every request, that
// cost a scan of up to maxRamps entries under the queue's lock per request
// of a ramping tenant, and one more per new tenant once the table was full
// (pruneRamps): 200,000 requests from distinct client addresses, each a
// new tenant, ran at ~2,000 a second instead of ~8,000, 57% of the
// gateway's CPU in holds, and every tenant of the pool waited on that lock
// (docs/RELIABILITY.md, "State keyed by client-chosen values at 200,000
// distinct values"). So past rampExact tenants the sums come from one scan
// of all of them, made again once the clock has moved rampRescans times a
// RampWindow on: at most that many scans a window, whatever the request
// rate. Each tenant's share of the scan is kept on its rampState, so a
// tenant subtracts its own. The sums are then up to RampWindow/rampRescans
// old: the peaks they are made of span one to two RampWindows already.
// Below rampExact tenants (every test of the ramp's rules, and any pool
// with a handful of tenants) each request scans them, as before.
const (
	rampExact   = 64
	rampRescans = 16
)

// rampSums is the last scan of the remembered tenants (rampScan).
type rampSums struct {
	scan    uint64    // scans made; a rampState counted in the last has sumScan == scan
	at      time.Time // when the last was made
	active  int       // active tenants counted
	weights float64   // their weights
	kept    int       // slots of their recent peaks they are not using
	margin  int       // their margins above those peaks (rampMargin)
	visits  uint64    // entries visited by the scans, all told (tests read the cost here)
}

// rampScan returns the sums of the active tenants as of at most
// RampWindow/rampRescans ago, scanning them again when older (or when the
// clock went back). The scan forgets the tenants no longer active, as
// pruneRamps does.
func (q *Queue) rampScan(now time.Time) *rampSums {
	s := &q.sums
	if s.scan != 0 && !now.Before(s.at) && now.Sub(s.at) < q.cfg.RampWindow/rampRescans {
		return s
	}
	s.scan++
	s.at, s.active, s.weights, s.kept, s.margin = now, 0, 0, 0, 0
	for name, o := range q.ramps {
		s.visits++
		if !q.active(name, o, now) {
			delete(q.ramps, name)
			continue
		}
		q.rotate(o, name, now)
		peak := max(o.peak, o.prevPeak)
		k, m := max(peak-q.inUseOf(name), 0), rampMargin(peak)
		o.sumScan, o.sumWeight, o.sumKept, o.sumMargin = s.scan, o.weight, k, m
		s.active++
		s.weights += o.weight
		s.kept += k
		s.margin += m
	}
	return s
}

// othersSums is holds' view of the active tenants other than tenant (rs):
// their weights, kept slots, margins and whether there are any, from the
// last scan less tenant's own share in it.
func (q *Queue) othersSums(rs *rampState, now time.Time) (weights float64, kept, margin int, others bool) {
	s := q.rampScan(now)
	weights, kept, margin, n := s.weights, s.kept, s.margin, s.active
	if rs != nil && rs.sumScan == s.scan {
		weights -= rs.sumWeight
		kept -= rs.sumKept
		margin -= rs.sumMargin
		n--
	}
	return weights, kept, margin, n > 0
}
