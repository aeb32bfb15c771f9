package endpoint

import (
	"context"
	"math"
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

// Retire ends the backend's drain: the attempts still running on it are
// cancelled (through Context). Call it once the backend has left every
// pool and its in-flight requests have had their grace.
func (b *Backend) Retire() { b.life.retire() }

// Context is cancelled when the backend is retired; an attempt on the
// backend ends with it.
func (b *Backend) Context() context.Context { return b.life.retired }
