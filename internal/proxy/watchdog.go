package proxy

import (
	"context"
	"sync/atomic"
	"time"
)

// watchdog cancels an attempt when its current phase (waiting for the first
// byte, for a stream's first token, or for the next chunk) lasts too long,
// or when the request's total deadline passes. One timer serves all the
// limits, so a request costs a single timer and no extra context.
//
// The gap between chunks is timed lazily: a chunk only stores the instant
// its gap ends (due), and the timer, armed for an earlier due, checks due
// when it fires and rearms for the rest (nginx's proxy_read_timeout is
// timed the same way). A stream's events thus cost a clock read and an
// atomic store each, not a timer reset. While the relay writes to the
// client (pause) the gap is not timed: a timer that fires then does
// nothing but note it (dueSleeping), and the write's end rearms it.
// Timer is the watchdog's timer, as time.AfterFunc makes it.
type Timer interface {
	Stop() bool
	Reset(time.Duration) bool
}

type watchdog struct {
	timer    Timer
	phase    atomic.Int32 // phaseFirstByte, phaseFirstToken or phaseIdle
	deadline time.Time    // total time limit
	now      func() time.Time
	// due is, in the idle phase, when the current gap ends, in
	// nanoseconds since base; or duePaused, dueSleeping, dueStopped.
	due  atomic.Int64
	base time.Time
	// firstToken is a stream's first-token deadline while the first chunk
	// has not come (zero: none). The relay's first idle call (at the
	// response head) keeps it; the next (a chunk came) drops it. Only the
	// attempt's goroutine touches it.
	firstToken time.Time
	headSeen   bool
}

const (
	phaseFirstByte int32 = iota
	phaseIdle
	phaseFirstToken
)

// The states of watchdog.due that are not an instant.
const (
	duePaused   = -1 - iota // the relay is writing to the client
	dueSleeping             // the timer fired while paused and is not armed
	dueStopped              // the attempt is over
)

var phaseCause = [...]error{phaseFirstByte: ErrFirstByteTimeout, phaseIdle: ErrStreamIdle, phaseFirstToken: ErrFirstTokenTimeout}

// startWatchdog arms, at time at (the attempt's start: the caller has just
// read the clock), the first-byte limit d, or the first-token limit ft
// when positive and tighter.
func startWatchdog(d, ft time.Duration, deadline, at time.Time, now func() time.Time, afterFunc func(time.Duration, func()) Timer, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{}
	w.start(d, ft, deadline, at, now, afterFunc, cancel)
	return w
}

// start is startWatchdog on a zero watchdog the caller allocated (with
// the attempt's other state: guarded).
func (w *watchdog) start(d, ft time.Duration, deadline, at time.Time, now func() time.Time, afterFunc func(time.Duration, func()) Timer, cancel context.CancelCauseFunc) {
	w.deadline, w.now, w.base = deadline, now, at
	if ft > 0 && ft < d {
		d = ft
		w.firstToken = at.Add(ft)
		w.phase.Store(phaseFirstToken)
	}
	w.timer = afterFunc(w.bound(d, at), func() { w.fire(cancel) })
}

// fire is the timer's: in the idle phase it rearms for the rest of the
// gap when a chunk has come since it was armed (or does nothing while the
// relay writes, or once the attempt is over); else it cancels the attempt
// with the phase's cause, or ErrTotalTimeout past the deadline.
func (w *watchdog) fire(cancel context.CancelCauseFunc) {
	phase := w.phase.Load()
	now := w.now()
	for phase == phaseIdle {
		due := w.due.Load()
		switch due {
		case dueStopped, dueSleeping:
			return
		case duePaused:
			if w.due.CompareAndSwap(duePaused, dueSleeping) {
				return // the write's end rearms it (idle)
			}
			continue // the write ended meanwhile: read due again
		}
		if left := time.Duration(due) - now.Sub(w.base); left > 0 {
			w.timer.Reset(left)
			return
		}
		break
	}
	cause := phaseCause[phase]
	if !now.Before(w.deadline) {
		cause = ErrTotalTimeout
	}
	cancel(cause)
}

// bound shortens d, from time at, so the timer never fires after the
// total deadline.
func (w *watchdog) bound(d time.Duration, at time.Time) time.Duration {
	if left := w.deadline.Sub(at); left < d {
		return max(left, 0)
	}
	return d
}

// idle switches to (or restarts) the gap-between-chunks phase. While a
// stream's first token is due, the first call (the response head came)
// keeps that deadline when it is the earlier one. In the idle phase it
// only moves due, unless the timer slept through a pause: d is the same
// at every call of an attempt (Timeouts.StreamIdle), so due only moves
// later and the timer, armed for an earlier one, is never late.
func (w *watchdog) idle(d time.Duration) {
	w.idleAt(d, w.now()) // one clock read per chunk
}

// idleAt is idle at time at, a clock read the caller has just made (the
// response head's, taken as the round trip returned).
func (w *watchdog) idleAt(d time.Duration, at time.Time) {
	if !w.firstToken.IsZero() && !w.headSeen {
		w.headSeen = true
		if left := w.firstToken.Sub(at); left < d {
			w.timer.Reset(w.bound(max(left, 0), at))
			return
		}
	}
	w.firstToken = time.Time{}
	b := w.bound(d, at)
	due := int64(at.Sub(w.base) + b)
	if w.phase.Load() != phaseIdle {
		w.due.Store(due)
		w.phase.Store(phaseIdle)
		w.timer.Reset(b)
		return
	}
	switch w.due.Swap(due) {
	case dueSleeping:
		w.timer.Reset(b)
	case dueStopped:
		w.due.Store(dueStopped) // over: stays over
	}
}

// firstTokenDue reports whether the attempt is held to a first-token
// deadline: set (Request.FirstToken, tighter than the first-byte bound),
// kept at the response head (the stream-idle bound is not the sooner)
// and no chunk taken for the first token since. The attempt's goroutine
// only.
func (w *watchdog) firstTokenDue() bool { return !w.firstToken.IsZero() }

// pause stops timing the gap while the relay writes to the client; the
// next idle resumes it. Only the attempt's goroutine calls idle, pause and
// stop; the timer's only change to due is duePaused to dueSleeping.
func (w *watchdog) pause() {
	if w.phase.Load() != phaseIdle {
		w.timer.Stop()
		return
	}
	if w.due.Load() != dueStopped {
		w.due.Store(duePaused)
	}
}

// stop ends the watchdog: its timer cancels nothing and is not rearmed
// (a firing that raced with stop may rearm it once, to return).
func (w *watchdog) stop() {
	w.due.Store(dueStopped)
	w.timer.Stop()
}
