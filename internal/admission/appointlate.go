package admission

import (
	"math"
	"time"
)

// Late appointments, before any outcome is known.
//
// The advice reads the book whole until an outcome of an appointment is
// known (showShare), and a missed one is known only when its grace has
// passed: at the start of a burst of clients that never come back, the
// refusals of its first seconds were told the whole book (147 s and
// 265 s, 1.5 and 2 s into a 400 req/s burst) while a fresh request was
// served seconds later. Counting an appointment as missed as soon as a
// client following its advice would be back (earlyadvice, 67253812)
// fixed that, but did it at every moment, against the wall clock:
//
//   - With outcomes known, the decayed share already follows the clients
//     within a grace period (2 s for short advice); counting late ones
//     too only moves a miss a second or so earlier, and takes a slow
//     client that does come back for a no-show. In the Retry-After
//     honesty test the clients that do come back are the advice's whole
//     point: each one counted late shortens the advice of the refusals
//     booked meanwhile, which then come back into a still-busy pool, are
//     refused again and, booked again, never come back (the test retries
//     once): true no-shows that, counted early, shorten the advice more.
//     The grace's delay damps that loop.
//   - On the wall clock, a stall of the machine (a loaded host, a long GC
//     pause, the client's process not scheduled) makes every appointment
//     due during it late at once: on a host at load 10-25 the honesty
//     test's retries served fell to 91.6% with 500 ms of slack.
//
// So here a late appointment counts only while no outcome is known at all
// (the book's very first seconds, the one time the share is a guess), and
// late is measured on the arrivals' clock: time that passes between two
// arrivals counts at most lateStep. An arrival is
// what a client that was going to come back would be doing too; when
// none arrives (the gateway or the clients' host stalled, or plain calm)
// the clock nearly stops and nobody turns late, and the grace, on the
// wall clock, still counts a true miss as before. In a no-show burst
// arrivals are dense (hundreds a second), the arrivals' clock keeps
// wall time, and the advice falls to the refusal's own estimate
// showLate after the first appointments' advice is up. Once the first
// appointment is kept or missed the late count is not read again: the
// advice is as without it from then on, until the overload is over (the
// book empty and no refusal for outcomeStale): the next one starts with
// no outcome known again.
//
// One late appointment is enough. Waiting for more costs a drain time
// each, as the book grows with every refusal: only the first refusals of
// a burst are told a short wait (the k-th is told k drain times), so the
// k-th late one is seen k drain times after the first (in a 100 req/s
// burst at 0.5 s a refusal, four late ones came after the first's grace,
// later than without late counting). A burst of clients that do come back
// risks one thing: its first client more than showLate late on the
// arrivals' clock with no client back before it; the refusals until one
// is back are told their own estimate.

const (
	// showLate is how long past its whole-second advice a client that
	// follows it is still on its way on the arrivals' clock: its own
	// latency, stalls already taken out.
	showLate = 500 * time.Millisecond
	// lateStep is the most the arrivals' clock moves between two
	// arrivals: a longer gap is a stall or a calm, not a client's delay.
	lateStep = 100 * time.Millisecond
)

// lateClock is the arrivals' clock: wall time that passes between two
// arrivals, each gap counted at most lateStep.
type lateClock struct {
	at   time.Duration // the clock at seen
	seen time.Time     // the last arrival
}

// arrive moves the clock to an arrival at now.
func (c *lateClock) arrive(now time.Time) {
	c.at = c.read(now)
	c.seen = now
}

// read is the clock at now, not moving it: the gap since the last
// arrival, at most lateStep, added.
func (c *lateClock) read(now time.Time) time.Duration {
	if c.seen.IsZero() {
		return c.at
	}
	return c.at + min(max(now.Sub(c.seen), 0), lateStep)
}

// lateAt is the arrivals' clock at which an appointment booked now, wait
// ahead, counts late: a client told Retry-After (wait in whole seconds,
// rounded up, at least minWait) and showLate more has not come back.
func (c *lateClock) lateAt(now time.Time, wait, minWait time.Duration) time.Duration {
	advised := max(time.Duration(math.Ceil(wait.Seconds()))*time.Second, minWait)
	return c.read(now) + advised + showLate
}

// outcomeStale is how long an empty book with no refusal booked ends an
// overload: the next refusal starts a new one with no outcome known.
// Longer than any gap between two refusals of one burst.
const outcomeStale = time.Minute

// forgetStaleOutcomes forgets the kept and missed appointments of an
// overload that is over (no appointment left, none booked for
// outcomeStale) when a refusal is booked at now: the queue outlives its
// bursts and config reloads, and the share of clients that came back an
// hour ago says nothing about the next burst's. Without it only the
// queue's first burst was ever read with no outcome known: a no-show
// burst an hour after a kept appointment was told the book whole
// (minutes, 2 s in) until its own misses, each told more than the last,
// outweighed the old share.
func (a *appointments) forgetStaleOutcomes(now time.Time) {
	if len(a.at) == 0 && now.Sub(a.lastBooked) >= outcomeStale {
		a.kept, a.missed = 0, 0
	}
	a.lastBooked = now
}

// noShowsSeen reports whether, with no outcome known yet, an appointment
// is late: the book's clients are taken for no-shows until one is back.
func (a *appointments) noShowsSeen() bool {
	return a.kept+a.missed <= 0 && a.late > 0
}
