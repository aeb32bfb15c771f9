package endpoint

import (
	"context"
	"sync/atomic"
	"time"
)

// StallWatch tells when this process itself was not running: paused by the
// machine (CPU contention, a stop signal) rather than waiting on a backend.
// A ticker's beat (Tick) that comes more than lagTolerance late, or one not
// come yet by then, marks such a stall. While the process stalls, no first
// token is read from any backend, so every backend with streams in flight
// looks backlogged once it runs again; the backlog bound (backlogBound)
// takes no evidence from that time, or it holds each backend at the few
// streams whose first tokens were read before the stall and refuses load
// its pool could serve (docs/BENCHMARKS.md §11, "Start-up refusals").
//
// The hot path reads it (two atomic loads) only when a backlog shows.
type StallWatch struct {
	every   time.Duration
	last    atomic.Int64 // the last beat, Unix ns; 0 before the first
	resumed atomic.Int64 // the first beat after a stall, Unix ns; 0: none seen
}

// lagTolerance is how late a beat may come without marking a stall: half
// the shortest stall taken for a backlog (minBacklogWait), so a lag that
// could by itself make a backlog's evidence is caught, and the scheduling
// jitter of a loaded machine (tens of milliseconds) is not.
const lagTolerance = minBacklogWait / 2

// StallBeat is the StallWatch's beat in production: frequent enough that a
// stall is seen within a fraction of minBacklogWait, cheap at 40 wake-ups a
// second for the whole process.
const StallBeat = 25 * time.Millisecond

// NewStallWatch returns a watch expecting a beat every every.
func NewStallWatch(every time.Duration) *StallWatch {
	return &StallWatch{every: every}
}

// Tick is one beat at now.
func (w *StallWatch) Tick(now time.Time) {
	at := now.UnixNano()
	prev := w.last.Swap(at)
	if prev != 0 && time.Duration(at-prev) > w.every+lagTolerance {
		w.resumed.Store(at)
	}
}

// StallIdleBeat is the beat once nothing has been in flight for a second
// (idleBeatsBeforeSlow fast beats): an idle gateway gathers no backlog
// evidence, and 40 wake-ups a second cost it about 5 ms of CPU per second
// (docs/BENCHMARKS.md §9, "Idle CPU after the StallWatch"). The first fast
// beat after a slow stretch marks it as a stall, so evidence from a stream
// that began during it counts only from then: a backlog at the very start
// of traffic after idleness is seen up to this much later.
const StallIdleBeat = time.Second

// idleBeatsBeforeSlow fast beats with nothing in flight slow the beat, so
// a gateway whose traffic pauses for less than a second keeps it fast.
const idleBeatsBeforeSlow = 40

// Run beats on now's clock until ctx ends: every w.every while busy (nil:
// always busy) reports requests in flight, every StallIdleBeat once it has
// reported none for idleBeatsBeforeSlow beats.
func (w *StallWatch) Run(ctx context.Context, now func() time.Time, busy func() bool) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	w.Tick(now())
	idle, cur := 0, w.every
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Tick(now())
			var next time.Duration
			idle, next = nextBeat(idle, busy == nil || busy(), w.every)
			if next != cur {
				cur = next
				t.Reset(cur)
			}
		}
	}
}

// nextBeat counts the beats with nothing in flight and returns the beat to
// use next.
func nextBeat(idle int, busy bool, every time.Duration) (int, time.Duration) {
	if busy {
		return 0, every
	}
	if idle++; idle >= idleBeatsBeforeSlow {
		return idle, StallIdleBeat
	}
	return idle, every
}

// evidenceSince is when evidence gathered since since, and read at now,
// starts to count: since itself, unless the process stalled after it (then
// from the stall's end) or stalls now (a beat overdue: from now, so
// nothing counts yet). A nil watch, or one that never beat, sees no stalls.
func (w *StallWatch) evidenceSince(since, now time.Time) time.Time {
	if w == nil {
		return since
	}
	last := w.last.Load()
	if last == 0 {
		return since
	}
	if time.Duration(now.UnixNano()-last) > w.every+lagTolerance {
		return now
	}
	if r := w.resumed.Load(); r != 0 && r > since.UnixNano() {
		return time.Unix(0, r)
	}
	return since
}
