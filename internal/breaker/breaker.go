// Package breaker holds per-backend circuit breakers and the pool-wide cap on
// how many of them may be open (outlier ejection).
//
// A Breaker follows Sentinel / resilience4j semantics: CLOSED trips to OPEN
// when, over a sliding time window holding at least MinRequests calls, the
// error ratio or the slow-call ratio reaches its threshold; OPEN lasts
// OpenFor (doubling on consecutive trips, capped); then HALF-OPEN admits a
// few trial calls, and closes when they all succeed or reopens on the first
// failure.
//
// Busy outcomes (429/503, with or without Retry-After) are back-pressure from
// a healthy but saturated backend: they are neither failures nor successes
// nor slow calls, never enter the window and never trip a breaker.
//
// Admission is two-step, like gobreaker's TwoStepCircuitBreaker, because a
// stream's outcome is only known at its end: Allow admits a call and returns
// the func that reports its outcome. All times are parameters, so tests run
// on fake time; they are compared as wall-clock instants (UnixNano), which
// lets the open deadline live in an atomic for the lock-free paths.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// State is a breaker's position in its state machine.
type State int32

const (
	Closed   State = iota // calls flow; outcomes feed the window
	HalfOpen              // a few trial calls decide whether to close
	Open                  // calls are refused until the open time ends
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

// Done reports the outcome of a call admitted by Allow. Call it exactly once
// (defer it): an admitted trial call that never reports holds its half-open
// slot. latency is compared with Settings.SlowCall.
type Done func(now time.Time, o outcome.Outcome, latency time.Duration)

// Breaker is one backend's circuit breaker. Safe for concurrent use; build it
// with New.
type Breaker struct {
	s Settings

	// closed is non-nil exactly while the breaker is CLOSED and holds that
	// generation's preallocated Done, so the closed fast path of Allow is
	// one atomic load and no allocation.
	closed    atomic.Pointer[closedGen]
	state     atomic.Int32 // State; read lock-free by Ready, State, Group
	openUntil atomic.Int64 // UnixNano; meaningful while Open
	group     atomic.Pointer[Group]

	busy    atomic.Uint64 // lifetime Busy outcomes, for Stats
	refused atomic.Uint64 // trips refused by the group's ejection cap

	mu        sync.Mutex
	gen       uint64 // bumped on every transition; stale reports are dropped
	win       window
	streak    int // consecutive trips since the breaker last closed
	probesOut int // half-open trials in flight
	probesOK  int // half-open trials that succeeded
	trips     uint64
}

// closedGen is one CLOSED period. Its done is the method value of record,
// bound once when the period starts rather than on every Allow.
type closedGen struct {
	b    *Breaker
	gen  uint64
	done Done
}

// New builds a closed Breaker; see Settings for the defaults of zero fields.
func New(s Settings) *Breaker {
	s = s.withDefaults()
	b := &Breaker{s: s, win: newWindow(s.Window, s.Buckets)}
	b.mu.Lock()
	b.enterLocked(Closed)
	b.mu.Unlock()
	return b
}

// Settings returns the effective settings, defaults applied.
func (b *Breaker) Settings() Settings { return b.s }

// Allow asks to send one call at now. When ok, the caller must send it and
// report its outcome through done exactly once; when not ok, done is nil.
// A closed breaker admits, and an open one refuses, without locking or
// allocating.
func (b *Breaker) Allow(now time.Time) (done Done, ok bool) {
	if cg := b.closed.Load(); cg != nil {
		return cg.done, true
	}
	if State(b.state.Load()) == Open && now.UnixNano() < b.openUntil.Load() {
		return nil, false // refusing needs no lock either
	}
	return b.allowSlow(now)
}

func (b *Breaker) allowSlow(now time.Time) (Done, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch State(b.state.Load()) {
	case Closed: // closed between the fast path's load and the lock
		return b.closed.Load().done, true
	case Open:
		if now.UnixNano() < b.openUntil.Load() {
			return nil, false
		}
		b.enterLocked(HalfOpen)
		b.notify(Open, HalfOpen)
	}
	if b.probesOut+b.probesOK >= b.s.HalfOpenProbes {
		return nil, false
	}
	b.probesOut++
	p := &probe{b: b, gen: b.gen}
	return p.done, true
}

// Ready reports whether Allow at now would admit a call, without changing
// anything: for routing filters, which ask often and send rarely. Lock-free
// unless the breaker is half-open.
func (b *Breaker) Ready(now time.Time) bool {
	switch State(b.state.Load()) {
	case Closed:
		return true
	case Open:
		return now.UnixNano() >= b.openUntil.Load()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch State(b.state.Load()) { // it may have moved while we waited
	case Closed:
		return true
	case Open:
		return now.UnixNano() >= b.openUntil.Load()
	}
	return b.probesOut+b.probesOK < b.s.HalfOpenProbes
}

// State reports the state at now. An open breaker whose open time has passed
// reports HalfOpen; the transition itself (and its OnStateChange) happens on
// the next Allow, so State has no side effects.
func (b *Breaker) State(now time.Time) State {
	st := State(b.state.Load())
	if st == Open && now.UnixNano() >= b.openUntil.Load() {
		return HalfOpen
	}
	return st
}

// Stats is a snapshot for /status and metrics.
type Stats struct {
	State        State
	Window       Counts    // calls in the sliding window (CLOSED only)
	OpenUntil    time.Time // zero unless Open
	Trips        uint64    // lifetime transitions into Open
	RefusedTrips uint64    // trips the group's ejection cap refused
	Busy         uint64    // lifetime Busy outcomes
}

// Stats returns a snapshot at now.
func (b *Breaker) Stats(now time.Time) Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{
		State:        b.State(now),
		Trips:        b.trips,
		RefusedTrips: b.refused.Load(),
		Busy:         b.busy.Load(),
	}
	switch State(b.state.Load()) {
	case Closed:
		st.Window = b.win.sum(now)
	case Open:
		st.OpenUntil = time.Unix(0, b.openUntil.Load())
	}
	return st
}

// record is the Done of calls admitted while CLOSED.
func (cg *closedGen) record(now time.Time, o outcome.Outcome, latency time.Duration) {
	b := cg.b
	if !b.counted(o) {
		return
	}
	slow := b.slow(latency)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != cg.gen {
		return // the breaker moved on; this call belongs to an old period
	}
	b.win.add(now, o == outcome.Failure, slow)
	c := b.win.sum(now)
	if int(c.Calls) < b.s.MinRequests {
		return
	}
	calls := float64(c.Calls)
	if float64(c.Failures)/calls >= b.s.FailureRatio ||
		(b.s.SlowCall > 0 && float64(c.Slow)/calls >= b.s.SlowRatio) {
		b.tripLocked(now)
	}
}

// counted tells Success and Failure (which count) from Busy and Ignored
// (which do not), keeping the Busy tally on the way.
func (b *Breaker) counted(o outcome.Outcome) bool {
	switch o {
	case outcome.Success, outcome.Failure:
		return true
	case outcome.Busy:
		b.busy.Add(1)
	}
	return false
}

func (b *Breaker) slow(latency time.Duration) bool {
	return b.s.SlowCall > 0 && latency > b.s.SlowCall
}

// tripLocked opens a CLOSED breaker unless its group's ejection cap forbids
// it. A refused trip clears the window, so the refusal counter counts trips
// rather than every later call, and the backend must fail MinRequests calls
// afresh before it asks again.
func (b *Breaker) tripLocked(now time.Time) {
	if g := b.group.Load(); g != nil {
		if !g.tryEject(func() { b.openLocked(now) }) {
			b.refused.Add(1)
			b.win.reset()
			return
		}
	} else {
		b.openLocked(now)
	}
	b.notify(Closed, Open)
}

// openLocked moves to OPEN for the back-off the current streak earns. It does
// not notify: a caller may hold the group's lock, which OnStateChange must
// not run under.
func (b *Breaker) openLocked(now time.Time) {
	b.streak++
	b.trips++
	b.openUntil.Store(now.Add(b.s.openFor(b.streak)).UnixNano())
	b.enterLocked(Open)
}

// enterLocked performs the bookkeeping of entering state to; the caller
// notifies.
func (b *Breaker) enterLocked(to State) {
	b.gen++
	switch to {
	case Closed:
		b.win.reset()
		b.streak = 0
		cg := &closedGen{b: b, gen: b.gen}
		cg.done = cg.record
		b.closed.Store(cg)
	case HalfOpen:
		b.closed.Store(nil)
		b.probesOut, b.probesOK = 0, 0
	case Open:
		b.closed.Store(nil)
	}
	b.state.Store(int32(to))
}

func (b *Breaker) notify(from, to State) {
	if b.s.OnStateChange != nil {
		b.s.OnStateChange(from, to)
	}
}

// probe is one half-open trial call. It is allocated per trial (rare) so a
// second report of the same call can be ignored instead of corrupting the
// slot count.
type probe struct {
	b    *Breaker
	gen  uint64
	used atomic.Bool
}

func (p *probe) done(now time.Time, o outcome.Outcome, latency time.Duration) {
	if p.used.Swap(true) {
		return
	}
	b := p.b
	counted := b.counted(o)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != p.gen {
		return
	}
	b.probesOut--
	if !counted {
		return // Busy or Ignored: no verdict; the slot goes to another trial
	}
	// A slow trial is a failed trial (Sentinel does the same): closing on
	// it would only trip again on the slow-call ratio.
	if o == outcome.Failure || b.slow(latency) {
		b.openLocked(now)
		b.notify(HalfOpen, Open)
		return
	}
	b.probesOK++
	if b.probesOK >= b.s.HalfOpenProbes {
		b.enterLocked(Closed)
		b.notify(HalfOpen, Closed)
	}
}
