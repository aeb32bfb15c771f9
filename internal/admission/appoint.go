package admission

import (
	"fmt"
	"time"
)

// Retry-After is a promise: a client told to come back in 7 seconds expects
// to be served then. Estimating it from the wait ahead of the refused
// request alone breaks the promise in every overload that lasts: each
// refused client is told "about a second", they all come back together,
// into the same overload, and are refused again. So refusals are booked
// like a waiting room (appointments):
//
//   - Each tenant has a book of its refused requests, in the order they
//     were refused, served at the tenant's weighted share of the pool's
//     measured drain rate. A refused request's Retry-After is its place in
//     its tenant's book: no sooner than its own estimate says it would fit
//     (the wait ahead of it beyond its deadline), and after the work of its
//     tenant's requests refused before it that will come back has drained.
//     The book ahead of a refusal (to its tenant's last appointment, plus
//     the refusal's own drain time) counts times the share of
//     appointments recently kept on time (showShare): refused demand is
//     a backlog only as far as it comes back. In a burst of
//     clients that do come back the advice grows with the burst, which is
//     the truth; a tenant refused often is spaced out, one refused rarely
//     comes back soon. Clients that do not come back (one-shot, or SDKs
//     that give up) are no backlog: counting them booked a 400 req/s burst
//     of them 5 minutes ahead within seconds, and a fresh refusal then got
//     Retry-After: 300 (and x-should-retry: false) with a slot free in a
//     second. The book itself keeps every refusal's drain time (what the
//     tenant's refused demand is if all of it comes back); only the advice
//     read from it is scaled, so the share applies to the whole book at
//     once and not again at every refusal (scaling the stored end shrank
//     the book at each refusal: it never grew past a few drain times, and
//     the first wave of a burst of clients that do come back was told a
//     second or two and came back into the burst: 56% of the honesty
//     test's retries served, against 96%). Before any outcome is known
//     the book is read whole, as clients that come back expect; the first
//     missed appointment (its grace past, a few seconds into a burst of
//     no-shows) lowers it, and before that, a few appointments late on
//     the arrivals' clock (appointlate.go).
//
//   - A request that comes back at its appointment (the same tenant, path
//     and body, from the advised time to a grace period after it) goes to
//     the front of its tenant's flow: ahead of the demand its tenant sent
//     while it waited as told, which would otherwise make the promise fail
//     for exactly the clients that kept it. The tenant's place among the
//     other tenants does not change, so honouring Retry-After gains no more
//     than the tenant's fair share.
//
//   - While appointments are due, slots are held for them: a request that
//     keeps no appointment does not take one of the free slots that the
//     appointments due within one mean slot hold (and those a moment
//     overdue) will need. It waits, or is refused with its own, later
//     appointment. Without this, fresh arrivals in the calm after a burst
//     take the slots the book promised (it paces the refused at the whole
//     drain rate) and the clients that came back as told are refused
//     again. The hold is scaled by the share of appointments recently
//     kept on time (none held for clients that do not come back), bounded
//     by the capacity, and lapses a moment after a due time.
//
// A client that does not send the same request back, or comes back early,
// is an ordinary arrival. The book holds at most maxAppointments entries;
// past that, refusals still get the book's Retry-After but no priority.
type appointments struct {
	at  map[uint64]appointment // by request fingerprint
	end map[string]time.Time   // by tenant: when its last appointment is
	// due is how many appointments hold a slot (reserved), as counted at
	// the time counted; recounted at most every reserveRecount.
	due     int
	counted time.Time
	// kept and missed count appointments kept on time and not (late or
	// never), decayed per event: slots are held only for the share of
	// clients that do come back as told.
	kept, missed float64
	// clock is the arrivals' clock, late how many appointments are past
	// their lateAt on it, as counted at the time counted, while no
	// outcome is known (appointlate.go).
	clock lateClock
	late  int
	// lastBooked is when the last refusal was booked (outcomeStale).
	lastBooked time.Time
}

// keepDecay is the weight left to the past per appointment kept or missed.
const keepDecay = 1 - 1.0/64

func (a *appointments) outcome(kept bool) {
	a.kept *= keepDecay
	a.missed *= keepDecay
	if kept {
		a.kept++
	} else {
		a.missed++
	}
}

// keptShare is the decayed share of appointments kept on time; 0 before
// any is known, so nothing is held for clients not yet seen coming back.
func (a *appointments) keptShare() float64 {
	if a.kept+a.missed <= 0 {
		return 0
	}
	return a.kept / (a.kept + a.missed)
}

// showShare is the share of the book a refusal's advice counts: the
// decayed share of appointments kept on time, 1 before any is known (the
// book read whole, as before any client was seen not coming back), 0
// when before any outcome a few are late already (noShowsSeen).
func (a *appointments) showShare() float64 {
	if a.noShowsSeen() {
		return 0
	}
	if a.kept+a.missed <= 0 {
		return 1
	}
	return a.keptShare()
}

type appointment struct {
	at, booked time.Time
	// late is the arrivals' clock at which it counts late (lateAt).
	late time.Duration
}

const (
	maxAppointments = 1 << 14
	// appointmentEarly is how early a client may come back: Retry-After is
	// whole seconds rounded up, Retry-After-Ms exact, so at worst a clock
	// tick early.
	appointmentEarly = 100 * time.Millisecond
	// appointmentGrace is how late an appointment is still honoured, at
	// least: clients add jitter and their own latency. A quarter of the
	// advised wait is added for long waits.
	appointmentGrace = 2 * time.Second
	// reserveOverdue is how long after its due time an appointment still
	// holds a slot: clients' own latency, not the whole grace, so slots
	// held for no-shows are soon given back.
	reserveOverdue = 250 * time.Millisecond
	// reserveRecount bounds how often the book is scanned for due
	// appointments (a scan is O(book), the book up to maxAppointments).
	reserveRecount = 100 * time.Millisecond
)

// promise sets a refusal's Retry-After to the refused request's
// appointment (never sooner than the estimate the refusal came with) and
// records it for the request's fingerprint.
//
// When the book puts it later than its own estimate, the message says so:
// Retry-After follows what the message states.
func (q *Queue) promise(rej *Rejection, r Request, now time.Time, capacity int) {
	own := rej.RetryAfter
	wait := q.book(r, now, own, capacity)
	rej.RetryAfter = min(max(wait, q.cfg.MinRetryAfter), q.cfg.MaxRetryAfter)
	if rej.RetryAfter > own {
		rej.Message += fmt.Sprintf("; requests of the same tenant refused before it are booked to come back first: retry after %s",
			waitText(rej.RetryAfter))
	}
}

// book gives a refused request its appointment: no sooner than earliest
// from now (when the refusal's own estimate says it would fit), and after
// its tenant's earlier appointments by the time its cost takes to drain at
// the tenant's weighted share of the drain rate (so a tenant refused often
// is spaced out, and one refused rarely comes back soon); never further
// than MaxRetryAfter ahead. It records the appointment under the request's
// fingerprint (0: not recorded) and returns the wait until it.
func (q *Queue) book(r Request, now time.Time, earliest time.Duration, capacity int) time.Duration {
	r = r.normalized()
	at := now.Add(earliest)
	rate := q.drain.perSlot() * float64(max(capacity, 1)) * r.Weight / q.poolWeight(r.Tenant, r.Weight)
	if q.appts.end == nil {
		q.appts.end = make(map[string]time.Time)
	}
	// The tenant's book: its end, then this request's own drain time,
	// every refusal counted (the end is where the book stands if all of
	// them come back).
	end := at
	if next := q.appts.end[r.Tenant].Add(time.Duration(r.Cost / rate * float64(time.Second))); next.After(end) {
		end = next
	}
	limit := now.Add(q.cfg.MaxRetryAfter)
	if end.After(limit) {
		end = limit
	}
	if _, known := q.appts.end[r.Tenant]; known || len(q.appts.end) < maxAppointments {
		q.appts.end[r.Tenant] = end // bounded like the appointments
	}
	q.appts.forgetStaleOutcomes(now)
	// The advice counts the book as far as refused clients come back:
	// with none seen coming back, the refusal's own estimate alone. Before
	// any outcome the late count is made fresh for this advice (a shed
	// refusal comes from no arrival); after, the recount is left to the
	// arrivals, as without late counting.
	if q.appts.kept+q.appts.missed <= 0 {
		q.countAppointments(now)
	}
	if due := now.Add(time.Duration(float64(end.Sub(now)) * q.appts.showShare())); due.After(at) {
		at = due
	}
	if at.After(limit) {
		at = limit
	}
	if fp := r.Fingerprint; fp != 0 {
		if q.appts.at == nil {
			q.appts.at = make(map[uint64]appointment)
		}
		if len(q.appts.at) >= maxAppointments || len(q.appts.end) >= maxAppointments {
			q.pruneAppointments(now)
		}
		if len(q.appts.at) < maxAppointments {
			q.appts.at[fp] = appointment{at: at, booked: now, late: q.appts.clock.lateAt(now, at.Sub(now), q.cfg.MinRetryAfter)}
		}
	}
	return at.Sub(now)
}

// poolWeight is the sum of the weights of the tenants with work in the
// pool (queued or in service), tenant's counted whether or not it has any.
func (q *Queue) poolWeight(tenant string, weight float64) float64 {
	sum := weight
	for name, ts := range q.tenants {
		if name != tenant {
			sum += ts.weight
		}
	}
	return sum
}

// keepsAppointment reports whether a request arriving at now with
// fingerprint fp comes back at its appointment, and consumes it.
func (q *Queue) keepsAppointment(fp uint64, now time.Time) bool {
	if fp == 0 || q.appts.at == nil {
		return false
	}
	a, ok := q.appts.at[fp]
	if !ok {
		return false
	}
	if now.Before(a.at.Add(-appointmentEarly)) {
		return false // too early: the appointment stays for later
	}
	delete(q.appts.at, fp)
	onTime := !now.After(a.at.Add(a.grace()))
	q.appts.outcome(onTime)
	if q.appts.due > 0 && !now.Before(a.at.Add(-appointmentEarly)) && !now.After(a.at.Add(reserveOverdue)) {
		q.appts.due-- // its held slot is the one it takes now
	}
	return onTime
}

// reserved is how many of capacity slots are held for appointments due
// now: those due within one mean slot hold from now (a slot taken now by
// someone else is not free before then) or overdue by at most
// reserveOverdue, times the share of appointments recently kept on time. Requests that keep no appointment may not take them.
// Recounted at most every reserveRecount; the scan also forgets
// appointments whose grace has passed.
func (q *Queue) reserved(now time.Time, capacity int) int {
	q.countAppointments(now)
	held := int(float64(q.appts.due)*q.appts.keptShare() + 0.5)
	return min(held, max(capacity, 0))
}

// countAppointments recounts, at most every reserveRecount, the
// appointments due now (appointments.due) and, while no outcome is known,
// those late on the arrivals' clock (appointments.late); it forgets those
// whose grace has passed (missed).
func (q *Queue) countAppointments(now time.Time) {
	if len(q.appts.at) == 0 {
		q.appts.due, q.appts.late = 0, 0
		return
	}
	if !now.Before(q.appts.counted) && now.Sub(q.appts.counted) < reserveRecount {
		return
	}
	ahead := now.Add(time.Duration(q.drain.meanHold() * float64(time.Second)))
	unknown := q.appts.kept+q.appts.missed <= 0
	clock := q.appts.clock.read(now)
	q.appts.due, q.appts.late, q.appts.counted = 0, 0, now
	for fp, a := range q.appts.at {
		switch {
		case now.After(a.at.Add(a.grace())):
			delete(q.appts.at, fp)
			q.appts.outcome(false)
		case !a.at.Add(-appointmentEarly).After(ahead) && !now.After(a.at.Add(reserveOverdue)):
			q.appts.due++
		}
		if unknown && clock > a.late {
			q.appts.late++
		}
	}
}

// appointedHead removes and returns a queued waiter keeping an appointment
// (the head of its flow, where appointed waiters go), highest class first;
// nil if none waits.
func (q *Queue) appointedHead() *waiter {
	for _, c := range q.classes {
		for _, f := range c.active {
			if w := f.waiters[0]; w.appointed {
				c.vtime = max(c.vtime, w.finish)
				c.remove(w)
				q.unqueue(w)
				return w
			}
		}
	}
	return nil
}

// grace is how late the appointment is still honoured: appointmentGrace,
// or a quarter of the advised wait when that is longer.
func (a appointment) grace() time.Duration {
	return max(appointmentGrace, a.at.Sub(a.booked)/4)
}

// pruneAppointments forgets appointments whose grace has passed, and
// tenants' book ends that are past.
func (q *Queue) pruneAppointments(now time.Time) {
	for fp, a := range q.appts.at {
		if now.After(a.at.Add(a.grace())) {
			delete(q.appts.at, fp)
			q.appts.outcome(false)
		}
	}
	for t, end := range q.appts.end {
		if end.Before(now) {
			delete(q.appts.end, t)
		}
	}
}
