package admission

import "time"

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
//     tenant's requests refused before it has drained. In a burst the
//     advice grows with the burst, which is the truth: the backlog of
//     refused demand grows too; a tenant refused often is spaced out, one
//     refused rarely comes back soon.
//   - A request that comes back at its appointment (the same tenant, path
//     and body, from the advised time to a grace period after it) goes to
//     the front of its tenant's flow: ahead of the demand its tenant sent
//     while it waited as told, which would otherwise make the promise fail
//     for exactly the clients that kept it. The tenant's place among the
//     other tenants does not change, so honouring Retry-After gains no more
//     than the tenant's fair share.
//
// A client that does not send the same request back, or comes back early,
// is an ordinary arrival. The book holds at most maxAppointments entries;
// past that, refusals still get the book's Retry-After but no priority.
type appointments struct {
	at  map[uint64]appointment // by request fingerprint
	end map[string]time.Time   // by tenant: when its last appointment is
}

type appointment struct {
	at, booked time.Time
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
)

// promise sets a refusal's Retry-After to the refused request's
// appointment (never sooner than the estimate the refusal came with) and
// records it for the request's fingerprint.
func (q *Queue) promise(rej *Rejection, r Request, now time.Time, capacity int) {
	wait := q.book(r, now, rej.RetryAfter, capacity)
	rej.RetryAfter = min(max(wait, q.cfg.MinRetryAfter), q.cfg.MaxRetryAfter)
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
	if next := q.appts.end[r.Tenant].Add(time.Duration(r.Cost / rate * float64(time.Second))); next.After(at) {
		at = next
	}
	if limit := now.Add(q.cfg.MaxRetryAfter); at.After(limit) {
		at = limit
	}
	if _, known := q.appts.end[r.Tenant]; known || len(q.appts.end) < maxAppointments {
		q.appts.end[r.Tenant] = at // bounded like the appointments
	}
	if fp := r.Fingerprint; fp != 0 {
		if q.appts.at == nil {
			q.appts.at = make(map[uint64]appointment)
		}
		if len(q.appts.at) >= maxAppointments || len(q.appts.end) >= maxAppointments {
			q.pruneAppointments(now)
		}
		if len(q.appts.at) < maxAppointments {
			q.appts.at[fp] = appointment{at: at, booked: now}
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
	return !now.After(a.at.Add(a.grace()))
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
		}
	}
	for t, end := range q.appts.end {
		if end.Before(now) {
			delete(q.appts.end, t)
		}
	}
}
