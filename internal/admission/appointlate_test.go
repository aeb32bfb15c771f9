package admission

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// lateBurst drives a cold queue through a burst on a frozen clock: a fresh
// one-shot request every 10 ms (100 req/s), every one refused (four slots
// held for good, 100-unit requests with a 100 ms deadline: each refusal's
// own estimate is 1 s, and it adds 0.5 s to its tenant's book), and the
// refused clients that come back, each at its whole-second Retry-After
// plus its lateness. A stall postpones every event due in it to its end,
// in order, as a host that stops scheduling the clients and the gateway
// does; the clients back from it come 50 ms after the fresh requests it
// held (the order after a stall is anyone's).
type lateBurst struct {
	t        *testing.T
	q        *Queue
	clk      *fakeClock
	start    time.Time
	back     func(fp uint64) (time.Duration, bool) // lateness; false: never back
	stallAt  time.Duration                         // a stall from stallAt...
	stallFor time.Duration                         // ...this long (0: none)
	returns  []lateReturn
	fp       uint64
}

type lateReturn struct {
	at time.Duration // since start
	fp uint64
}

// refusal is one fresh request's refusal, at its time since the start.
type refusal struct {
	at   time.Duration
	rej  *Rejection
	book bool // told its place in the book, not its own estimate
}

func newLateBurst(t *testing.T, back func(uint64) (time.Duration, bool)) *lateBurst {
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(4).get, clk.Now)
	for range 4 {
		grantedT(t, q, Request{Tenant: "busy", Cost: 100})
	}
	return &lateBurst{t: t, q: q, clk: clk, start: clk.Now(), back: back}
}

// stalled is when an event due at at happens.
func (b *lateBurst) stalled(at time.Duration) time.Duration {
	if b.stallFor > 0 && at >= b.stallAt && at < b.stallAt+b.stallFor {
		return b.stallAt + b.stallFor
	}
	return at
}

// stalledBack is when a client due back at at comes.
func (b *lateBurst) stalledBack(at time.Duration) time.Duration {
	if s := b.stalled(at); s != at {
		return s + 50*time.Millisecond
	}
	return at
}

// run sends fresh requests until end and returns their refusals.
func (b *lateBurst) run(end time.Duration) []refusal {
	var out []refusal
	for next := time.Duration(0); next < end; next += 10 * time.Millisecond {
		fresh := b.stalled(next)
		// Clients back before the next fresh request come first.
		slices.SortStableFunc(b.returns, func(x, y lateReturn) int { return int(x.at - y.at) })
		for len(b.returns) > 0 && b.returns[0].at <= fresh {
			r := b.returns[0]
			b.returns = b.returns[1:]
			b.clk.Set(b.start.Add(r.at))
			_, _, _ = b.q.submit(Request{Tenant: "c", Cost: 100, Deadline: b.clk.Now().Add(100 * time.Millisecond), Fingerprint: r.fp})
		}
		b.clk.Set(b.start.Add(fresh))
		b.fp++
		_, _, err := b.q.submit(Request{Tenant: "c", Cost: 100, Deadline: b.clk.Now().Add(100 * time.Millisecond), Fingerprint: b.fp})
		var rej *Rejection
		if !errors.As(err, &rej) {
			b.t.Fatalf("fresh request at %v: %v; want a refusal", fresh, err)
		}
		out = append(out, refusal{at: fresh, rej: rej, book: strings.Contains(rej.Message, "booked")})
		if late, ok := b.back(b.fp); ok {
			advised := time.Duration(math.Ceil(rej.RetryAfter.Seconds())) * time.Second
			b.returns = append(b.returns, lateReturn{at: b.stalledBack(fresh + advised + late), fp: b.fp})
		}
	}
	return out
}

// In a burst of clients that never come back, the advice is the refusal's
// own estimate again as soon as the first appointment's client, told 1 s,
// is showLate overdue: 1.5 s in, not when its grace has passed (3 s in,
// the book read whole until then: 1m14s told 1.5 s in, 2m28s 3 s in).
// Fails without late counting (the advice at 2 s is 1m39s).
func TestNoShowBurstAdviceShortOnceTheFirstIsLate(t *testing.T) {
	b := newLateBurst(t, func(uint64) (time.Duration, bool) { return 0, false })
	refusals := b.run(4 * time.Second)
	if first := refusals[0].rej.RetryAfter; first != time.Second {
		t.Fatalf("the first refusal was told %v; the test needs 1s", first)
	}
	var bad *refusal
	for i, r := range refusals {
		if r.at%(500*time.Millisecond) == 0 {
			t.Logf("%v into the burst: Retry-After %v", r.at, r.rej.RetryAfter)
		}
		// The first's advice (1 s) and showLate up, and the next recount.
		if bad == nil && r.at >= time.Second+showLate+reserveRecount && (r.rej.RetryAfter > 2*time.Second || r.book) {
			bad = &refusals[i]
		}
	}
	if bad != nil {
		t.Fatalf("%v into a no-show burst (the first appointment, told 1s, not kept): Retry-After %v (%s); want its own estimate",
			bad.at, bad.rej.RetryAfter, bad.rej.Message)
	}
}

// A burst of clients that do come back, a little late (300 ms past their
// whole-second advice, within showLate), behind a 1.5 s stall of the host
// just as the first of them are due: the clock jumps 1.5 s with no
// arrival, so on the wall clock every appointment due in it is late at
// once; on the arrivals' clock none is. The refusals after the stall are
// still told their place in the book, the advice the clients need to be
// served when they come back, not their own estimate (1 s, into the
// burst). Fails with the wall clock (lateStep unbounded), as earlyadvice's
// late counting was.
func TestReturningBurstBehindAStallKeepsTheBook(t *testing.T) {
	b := newLateBurst(t, func(uint64) (time.Duration, bool) { return 300 * time.Millisecond, true })
	b.stallAt, b.stallFor = time.Second, 1500*time.Millisecond
	b.expectBookRead(t)
}

// A burst of clients that come back a little late (300 ms, within
// showLate) on a host that does not stall: every refusal but the first is
// told its place in the book, before and after the first client is back.
func TestReturningBurstSlightlyLateKeepsTheBook(t *testing.T) {
	b := newLateBurst(t, func(uint64) (time.Duration, bool) { return 300 * time.Millisecond, true })
	b.expectBookRead(t)
}

// Once an outcome is known the late count is not read: a client that comes
// back late within its grace after others were kept does not shorten the
// advice of the refusals booked while it is on its way.
func TestLateCountOnlyBeforeAnyOutcome(t *testing.T) {
	// Every client back on time but the second (told 2 s, late from
	// 2.51 s), back 1.5 s late (within its grace) after the first was
	// kept at 1 s.
	b := newLateBurst(t, func(fp uint64) (time.Duration, bool) {
		if fp == 2 {
			return 1500 * time.Millisecond, true
		}
		return 0, true
	})
	refusals := b.run(4 * time.Second)
	for _, r := range refusals[1:] {
		if !r.book {
			t.Fatalf("%v: Retry-After %v (%s); want its place in the book", r.at, r.rej.RetryAfter, r.rej.Message)
		}
	}
}

// A queue outlives its bursts (and config reloads): a no-show burst an
// hour after an overload whose one refused client came back and was
// served starts with no outcome known again, and is told its own
// estimate once its first appointment is late, as the queue's first
// burst is. Before, the hour-old kept share (1 of 1) was read on: the
// book whole, 1m14s told 2 s in, minutes on, until the new burst's own
// misses (each told more than the last, so each missed later)
// outweighed it. Fails without outcomeStale (the reset).
func TestNoShowBurstAnHourAfterAKeptAppointmentCountsLateAgain(t *testing.T) {
	refusals := noShowBurstAfterAKeptAppointment(t, time.Hour)
	first := refusals[0].rej.RetryAfter
	for _, r := range refusals {
		// The first's whole-second advice and showLate up, and the next recount.
		if r.at >= first.Truncate(time.Second)+time.Second+showLate+reserveRecount && r.book {
			t.Fatalf("%v into a no-show burst an hour after the last overload (the first told %v): Retry-After %v (%s); want its own estimate",
				r.at, first, r.rej.RetryAfter, r.rej.Message)
		}
	}
}

// Within outcomeStale of the last refusal the overload is the same one:
// its kept share is read on (the book whole, as the one kept appointment
// says), the late count not read.
func TestNoShowBurstSoonAfterAKeptAppointmentReadsItsShare(t *testing.T) {
	refusals := noShowBurstAfterAKeptAppointment(t, outcomeStale/2)
	if last := refusals[len(refusals)-1]; !last.book {
		t.Fatalf("%v into a no-show burst %v after a kept appointment: Retry-After %v (%s); want its place in the book",
			last.at, outcomeStale/2, last.rej.RetryAfter, last.rej.Message)
	}
}

// noShowBurstAfterAKeptAppointment runs an overload whose one refused
// client comes back and is served, then, gap after, a burst of clients
// that never come back (lateBurst), and returns the burst's refusals.
func noShowBurstAfterAKeptAppointment(t *testing.T, gap time.Duration) []refusal {
	t.Helper()
	clk := newFakeClock()
	q := NewQueue(QueueConfig{Name: "m", Fair: true}, newCapacity(4).get, clk.Now)
	var busy []*Ticket
	for range 4 {
		busy = append(busy, grantedT(t, q, Request{Tenant: "busy", Cost: 100}))
	}
	_, _, err := q.submit(Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(100 * time.Millisecond), Fingerprint: 1})
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("the earlier overload's request: %v; want a refusal", err)
	}
	clk.Advance(rej.RetryAfter)
	busy[0].Release()
	tk, w, err := q.submit(Request{Tenant: "c", Cost: 100, Deadline: clk.Now().Add(time.Minute), Fingerprint: 1})
	if err != nil || w != nil {
		t.Fatalf("the client back at its advice with a slot free: queued %v, err %v; want served", w != nil, err)
	}
	clk.Advance(10 * time.Second) // a long hold: the drain measured keeps the next burst's requests refused
	tk.Release()
	for _, tk := range busy[1:] {
		tk.Release()
	}
	if q.appts.kept != 1 || q.appts.missed != 0 || len(q.appts.at) != 0 {
		t.Fatalf("after the earlier overload: kept %.1f, missed %.1f, book %d; want 1, 0, 0", q.appts.kept, q.appts.missed, len(q.appts.at))
	}

	clk.Advance(gap)
	for range 4 {
		grantedT(t, q, Request{Tenant: "busy", Cost: 100})
	}
	b := &lateBurst{t: t, q: q, clk: clk, start: clk.Now(), back: func(uint64) (time.Duration, bool) { return 0, false }, fp: 1000}
	refusals := b.run(6 * time.Second)
	for _, r := range refusals {
		if r.at%time.Second == 0 {
			t.Logf("%v into the no-show burst: Retry-After %v", r.at, r.rej.RetryAfter)
		}
	}
	return refusals
}

// expectBookRead runs a 4 s burst of clients that come back and wants
// every refusal but the first told its place in the book, and at least
// one appointment kept.
func (b *lateBurst) expectBookRead(t *testing.T) {
	t.Helper()
	refusals := b.run(4 * time.Second)
	for _, r := range refusals[1:] {
		if !r.book {
			t.Fatalf("%v into a burst of clients that come back: Retry-After %v (%s); want its place in the book",
				r.at, r.rej.RetryAfter, r.rej.Message)
		}
	}
	if b.q.appts.kept == 0 {
		t.Fatal("no appointment kept: the test's clients did not come back")
	}
}
