package admission

import "time"

// On adaptive limits the ramp's base is the pool's in-use peak of the last
// one to two RampWindows (rampBase), grown by probes only beside tenants
// owed no headroom (rampmargin.go). So beside a tenant on two or more
// slots a newcomer's parallel streams were held for a round trip of its
// first answer even when the engines had run many more streams minutes
// before: tenant A on two long streams, B's five held 34-36 s with 3 of
// 16 slots in use (docs/RELIABILITY.md, branch ramp3, "Left alone").
//
// The pool therefore remembers, for longer, the most slots at which the
// engines still started a stream promptly: a ticket granted with n slots
// in use (itself included) whose first token came within the backend's
// prompt bound (endpoint.Backend.FirstToken) shows the engines ran n at
// once, as a probe's does. The memory spans one to two rampProvenWindows
// (two buckets, as the peaks). A late first token of a ticket granted at
// n says the engines were full below n: the memory drops below n at once,
// so an engine lost or slowed since is not trusted for the rest of the
// window.
//
// A ramping tenant may take the slots of that memory beyond the recent
// base, but only those left once every other active tenant has its kept
// slots and its margin above its recent peak (rampMargin): the headroom
// for the others' variation is taken out of what the engines proved
// before any of it goes to the newcomer. The allowance (half the fair
// share) stays reckoned from the recent base, and probes keep their rule.
// In the chaos suite's slow-readers row the steady client peaks at 12-20
// slots of 24 (margin 4-5), so what the engines proved less its margin is
// about its recent peak, the base main already uses: the burst gets no
// slot the client's variation needs, the failure of ramp2's probes.

// rampProvenWindow is one bucket of the memory of prompt starts.
const rampProvenWindow = 10 * time.Minute

// rampProven is the pool's memory of the most slots in use at which a
// stream started promptly.
type rampProven struct {
	peak, prevPeak int // the current and the previous bucket
	window         time.Time
}

// rotateProven moves the memory's bucket forward to now.
func (q *Queue) rotateProven(now time.Time) {
	p := &q.proven
	if el := now.Sub(p.window); el >= rampProvenWindow || el < 0 {
		if el >= 2*rampProvenWindow || el < 0 {
			p.prevPeak = 0
		} else {
			p.prevPeak = p.peak
		}
		p.peak = 0
		p.window = now
	}
}

// provenSlots is the most slots in use at which the engines started a
// stream promptly within the last one to two rampProvenWindows.
func (q *Queue) provenSlots(now time.Time) int {
	q.rotateProven(now)
	return max(q.proven.peak, q.proven.prevPeak)
}

// noteStart records a first token of a ticket granted with level slots
// in use: prompt, the engines ran level at once; late, they were full
// below it.
func (q *Queue) noteStart(level int, prompt bool, now time.Time) {
	q.rotateProven(now)
	p := &q.proven
	if prompt {
		p.peak = max(p.peak, level)
		return
	}
	p.peak = min(p.peak, level-1)
	p.prevPeak = min(p.prevPeak, level-1)
}

// provenBase is the base a ramping tenant's free slots are reckoned from:
// the recent base, or what the engines proved within the memory less the
// others' margins, whichever is more, at most the capacity. A fresh
// reported room (reportedOK, rampceiling.go), 0 included, stands in the
// memory's place: the engines' own account now supersedes what they did
// within the last 10-20 minutes, up or down.
func (q *Queue) provenBase(recent, margin, reported int, reportedOK bool, now time.Time, capacity int) int {
	proven := q.provenSlots(now)
	if reportedOK {
		proven = reported
	}
	return min(capacity, max(recent, proven-margin))
}
