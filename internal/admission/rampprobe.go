package admission

import (
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// The ramp's base on adaptive limits grows by probes, as TCP's slow start
// grows its window by acks. Reckoned from the pool's recent in-use peak
// alone, the base grew only through grants the ramp itself refused: tenant
// A on one slot, tenant B newly busy beside it with a long first answer,
// B's next requests were held until that answer came back (35 s, or
// refused at a 2 s objective) with 2 of the engines' 16 slots in use. The
// capacity, a sum of adaptive limits, cannot stand in for the slots (it
// read 36-54 on 24 in the chaos pool), and neither can a first token
// judged by the adaptive limit's own tolerance: its latency floor lets an
// engine queue unseen.
//
// So when a ramping tenant is held only because the base is full, one of
// its requests may go above the base: the probe. The engine starting it
// promptly is evidence that the slot exists: its first token within
// max(2 x the backend's typical time to first token, 100 ms), the wait
// after which the gateway takes a stream without one to be queued behind
// a full batch (endpoint.Backend.FirstToken, backlogBound). A request
// queued inside an engine behind long answers waits for one of them to
// end, seconds, well past that. A prompt start counts the probe's slot in
// the pool's peak (the base), and the next probe may go at once; a late
// one stops probing for a RampWindow, as a loss ends TCP's slow start.
// One probe is out at a time, so an engine that is full takes at most one
// request it cannot start, and the base grows by a slot per first token
// (tens of milliseconds) rather than per answer (seconds to minutes).
// A probe that ends without a first token to judge (a JSON answer, an
// error) proves nothing either way: the next may go.
//
// Until its first token the probe's slot is not in the pool's peak, and
// a confirmed slot ages out of it like any other: when the pool holds
// fewer for one to two RampWindows the base shrinks back. A probe goes
// only when the pool holds its whole base (a grant while a proven slot
// is free takes, in the engines, a slot kept for another tenant) and the
// other active tenants are owed no headroom above their recent peaks
// (rampmargin.go): without that rule the chaos suite's slow-readers
// burst probed into every slot beyond the steady tenant's peak.

// rampProbe is the pool's probe state.
type rampProbe struct {
	out     *Ticket   // the probe awaiting its first token; nil: none
	blocked time.Time // no probe before this: the last one started late
}

// mayProbe reports whether a grant above the base may go now.
func (q *Queue) mayProbe(now time.Time) bool {
	return q.probe.out == nil && !now.Before(q.probe.blocked)
}

// startProbe marks t, granted above the base, as the probe out.
func (q *Queue) startProbe(t *Ticket) {
	t.probe = true
	q.probe.out = t
}

// endProbe forgets t as the probe out, if it is: its slot given back
// before a first token was judged.
func (q *Queue) endProbe(t *Ticket) {
	if q.probe.out == t {
		q.probe.out = nil
	}
}

// notePoolInUse records the pool's slots in use in its peak, less a probe
// not yet confirmed.
func (q *Queue) notePoolInUse(now time.Time) {
	q.rotatePool(now)
	n := q.inUse
	if q.probe.out != nil {
		n--
	}
	q.poolPeak = max(q.poolPeak, n)
}

// FirstToken tells the queue the ticket's stream got its first token, and
// whether promptly (endpoint.Backend.FirstToken). The pool remembers the
// slots in use at the ticket's grant as proven when it was prompt, and
// forgets what is above them when it was late (rampproven.go). For a probe
// (a grant above the tenant ramp's base) a prompt start also adds its slot
// to the base and lets the next probe go; a late one stops probing for a
// RampWindow. The caller tells only a start of generation: not an error
// answer, nor a stream whose first event is an error. Safe to call more
// than once (a hedge's legs: the first counts), on a released ticket, and
// on nil.
func (t *Ticket) FirstToken(prompt bool) {
	if t == nil {
		return
	}
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.started || t.released.Load() {
		return // told before, or too late: its slot is given back
	}
	t.started = true
	if !q.rampOn() || t.level == 0 {
		return
	}
	now := q.clock()
	q.noteStart(t.level, prompt, now)
	if !t.probe || q.probe.out != t {
		return
	}
	q.probe.out = nil
	if !prompt {
		q.probe.blocked = now.Add(q.cfg.RampWindow)
		q.counters.probesLate++
		return
	}
	q.counters.probesPrompt++
	q.notePoolInUse(now)
	q.dispatch(now, q.capacity())
}

// Answered tells the queue the ticket's request was answered whole with a
// success that carries no first token to judge: a JSON answer, for a
// stream request too (a backend that ignored "stream", a transcription
// whisper answers in JSON). It counts as a completion of the tenant's
// ramp, as a stream's first token does, and proves no slot. Safe to call
// more than once, on a released ticket, and on nil.
func (t *Ticket) Answered() {
	if t == nil || !t.streams {
		return // a request that does not stream is told how it ended (Ended)
	}
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.released.Load() {
		t.answered = true
	}
}

// Ended tells the ticket how its request ended, before Release: out is
// outcome.Success only for a 2xx answer the backend gave whole (the
// caller's mapping: a 4xx is the client's, a 5xx or a broken answer a
// failure, 429/503 busy, a client that left ignored). A request that does
// not stream counts as a tenant ramp completion only when told Success:
// an error answer, a timeout or a cancel shows no slot the engines serve,
// as a loss is no ack to TCP's slow start. Called by the goroutine that
// releases the ticket (no lock: Release reads it after, on that
// goroutine); nil-safe; the last call counts.
func (t *Ticket) Ended(out outcome.Outcome) {
	if t != nil {
		t.succeeded = out == outcome.Success
	}
}

// served reports whether the ticket's request counts as answered for the
// tenant ramp's completions: a stream once its first token was told or
// its request was answered whole (Answered) — one that failed, was
// cancelled or began with an error before either did not — and a request
// that does not stream once told it ended in success (Ended): one never
// told does not count. Under the queue's mutex.
func (t *Ticket) served() bool {
	if t.streams {
		return t.started || t.answered
	}
	return t.succeeded
}
