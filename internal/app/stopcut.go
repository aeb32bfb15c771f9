package app

import (
	"context"
	"math"
	"time"
)

// CutWatch shortens a running stop's bound on a second signal: a bound
// taken when a stop begins (the job queue's at the end of `sluice
// serve`'s shutdown, `sluice worker`'s store close) does not see a signal
// that comes during the stop, so an idle process on a NATS that answers
// nothing (a wedged embedded server, docs/RELIABILITY.md kvwedge) waited
// its whole grace + 7 s however often it was signalled. Both stops follow
// this one rule: a second signal only shortens (review16, smallleft15).
type CutWatch struct {
	// Cut closes on the second signal (or is closed already).
	Cut <-chan struct{}
	// Left is what the stop has left once Cut closed, asked then: the
	// close's own 5 s and what is left of the cut's 2 s.
	Left func() time.Duration
	// Timer measures Left (realTimer outside tests).
	Timer func(time.Duration) (fire <-chan time.Time, stop func())
	// Cause ends the context when Left passes.
	Cause error
	// Shortened, when not nil, is told Left when Cut closed, before its
	// timer starts: the caller's record of the bound it names.
	Shortened func(left time.Duration)
}

// Watch returns ctx, also ended with w.Cause once w.Left has passed after
// w.Cut closed, when that is sooner than ctx's own end (a cut never
// lengthens a stop). stop releases the watch (its goroutine, owned by the
// stop) and must be called when the stop returns.
func (w CutWatch) Watch(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-w.Cut:
		case <-ctx.Done():
			return
		}
		left := w.Left()
		if w.Shortened != nil {
			w.Shortened(left)
		}
		fire, stopTimer := w.Timer(left)
		defer stopTimer()
		select {
		case <-fire:
			cancel(w.Cause)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil); <-watched }
}

// AddBounds adds non-negative bounds, saturating at the largest Duration
// (~292 years) where the sum would overflow: a shutdown_grace or worker
// --grace within 7 s of it made grace + 2 s + 5 s wrap to a negative
// bound, and the stop was given up at once. Such a grace means "wait for
// good"; the saturated bound says the same.
func AddBounds(ds ...time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		if d > math.MaxInt64-sum {
			return math.MaxInt64
		}
		sum += d
	}
	return sum
}
