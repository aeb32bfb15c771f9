package endpoint

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// slowStartFloor is the share of its weight and limit a backend gets the
// moment it joins a running pool: enough for a first request, so the ramp
// starts from measurements, not from nothing.
const slowStartFloor = 0.1

// ramp is a slow-start window: from since, for window, as told by now.
type ramp struct {
	since  time.Time
	window time.Duration
	now    func() time.Time
}

// lifecycle is what joining and leaving a pool adds to a backend: the
// slow-start ramp of one that joined a running pool, and the retirement
// of one that left it.
type lifecycle struct {
	ramp atomic.Pointer[ramp] // nil: no ramp (or it ended)
	// retired is cancelled when the backend's drain ends: attempts still
	// running on it are cut (Context).
	retired context.Context
	retire  context.CancelFunc
	// hooks are the attempts to cancel at retirement (HookRetire), and
	// gone says Retire ran; both under hookMu.
	hookMu sync.Mutex
	hooks  *RetireHook
	gone   bool
	// left: the backend left every pool (Leave) and has not come back
	// (Rejoin).
	left atomic.Bool
}

func (l *lifecycle) init() {
	l.retired, l.retire = context.WithCancel(context.Background())
}

// SlowStart ramps the backend's weight and concurrency limit from a tenth
// to full, linearly over window from now(), as nginx slow_start and
// Envoy's slow_start_window do for a server joining a running pool: a cold
// server (empty caches, no compiled graphs) is not sent its full share
// at once. window <= 0 does nothing.
func (b *Backend) SlowStart(window time.Duration, now func() time.Time) {
	if window <= 0 {
		return
	}
	b.life.ramp.Store(&ramp{since: now(), window: window, now: now})
}

// RampFactor is the share of its weight and limit the backend gets now:
// 1 when it is not ramping, else in [0.1, 1).
func (b *Backend) RampFactor() float64 {
	r := b.life.ramp.Load()
	if r == nil {
		return 1
	}
	elapsed := r.now().Sub(r.since)
	if elapsed >= r.window {
		b.life.ramp.CompareAndSwap(r, nil)
		return 1
	}
	return max(slowStartFloor, float64(elapsed)/float64(r.window))
}

// ramped scales n (a weight or a limit) by the ramp, never below 1; 0
// (unlimited) stays 0.
func (b *Backend) ramped(n int) int {
	if n <= 0 {
		return n
	}
	f := b.RampFactor()
	if f >= 1 {
		return n
	}
	return max(1, int(math.Ceil(float64(n)*f)))
}

// Leave marks the backend as gone from every pool, before its drain
// starts counting what runs on it. A request that picked it just before
// (from the pool it had left a moment later) and then took a slot sees
// Left and picks again: the drain reads Inflight after Leave, and the
// request reads Left after its slot is counted in Inflight, so either
// the drain waits for the request or the request goes elsewhere; none
// is sent to a backend whose drain found it idle and retired it.
func (b *Backend) Leave() { b.life.left.Store(true) }

// Rejoin undoes Leave: the backend is in a pool again (before that pool
// serves).
func (b *Backend) Rejoin() { b.life.left.Store(false) }

// Left reports whether the backend left every pool (Leave).
func (b *Backend) Left() bool { return b.life.left.Load() }

// Retire ends the backend's drain: the attempts still running on it are
// cancelled (their hooks, HookRetire, then Context). Call it once the
// backend has left every pool and its in-flight requests have had their
// grace.
func (b *Backend) Retire() {
	l := &b.life
	l.hookMu.Lock()
	l.gone = true
	var fire []*RetireHook
	for h := l.hooks; h != nil; {
		next := h.next
		h.prev, h.next, h.on = nil, nil, false
		fire = append(fire, h)
		h = next
	}
	l.hooks = nil
	l.hookMu.Unlock()
	for _, h := range fire {
		h.Cancel(h.Cause)
	}
	l.retire()
}

// RetireHook is an attempt's place on its backend's retirement list: when
// the backend is retired, Cancel(Cause) ends the attempt. A list rather
// than context.AfterFunc on Context: an attempt per request would pay
// there a context registration, four allocations and a map insert and
// delete under the context's lock; here it links and unlinks a node it
// owns under a mutex of its backend.
type RetireHook struct {
	Cancel     context.CancelCauseFunc
	Cause      error
	prev, next *RetireHook
	on         bool
}

// HookRetire puts h on the retirement list until UnhookRetire takes it
// off. It returns false, h not put on, when the backend is retired
// already: the caller ends the attempt itself.
func (b *Backend) HookRetire(h *RetireHook) bool {
	l := &b.life
	l.hookMu.Lock()
	if l.gone {
		l.hookMu.Unlock()
		return false
	}
	h.prev, h.next, h.on = nil, l.hooks, true
	if l.hooks != nil {
		l.hooks.prev = h
	}
	l.hooks = h
	l.hookMu.Unlock()
	return true
}

// UnhookRetire takes h off the retirement list; nothing when it is not on
// it (never put on, taken off, or fired by Retire).
func (b *Backend) UnhookRetire(h *RetireHook) {
	l := &b.life
	l.hookMu.Lock()
	if h.on {
		if h.prev != nil {
			h.prev.next = h.next
		} else {
			l.hooks = h.next
		}
		if h.next != nil {
			h.next.prev = h.prev
		}
		h.prev, h.next, h.on = nil, nil, false
	}
	l.hookMu.Unlock()
}

// Context is cancelled when the backend is retired; an attempt on the
// backend ends with it.
func (b *Backend) Context() context.Context { return b.life.retired }
