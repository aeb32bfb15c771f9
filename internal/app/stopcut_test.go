package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-gw/sluice/internal/testutil/leaktest"
)

// CutWatch's goroutine is the stop's: released when the stop returns
// first (no cut), when a cut had already come before the stop began (its
// timer stopped, not left running), and a cut after the stop changes
// nothing (goleak). The test's timer fires only when the test says, so no case
// waits on the clock. (review20: no bug found; pins the release.)
func TestCutWatchIsReleasedWithItsStop(t *testing.T) {
	// Only the watches' goroutines: an earlier test's given-up queue
	// stop leaves its embedded NATS running by design (as a process
	// would at its exit).
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { leaktest.VerifyNone(t, before) })
	errBound := errors.New("bound")
	watch := func(cut <-chan struct{}, fire <-chan time.Time, stopped *int, left *time.Duration) CutWatch {
		return CutWatch{
			Cut: cut, Left: func() time.Duration { return 5 * time.Second }, Cause: errBound,
			Timer: func(d time.Duration) (<-chan time.Time, func()) {
				return fire, func() { *stopped++ }
			},
			Shortened: func(d time.Duration) { *left = d },
		}
	}
	t.Run("stop returns before any cut", func(t *testing.T) {
		cut := make(chan struct{})
		var stopped int
		var left time.Duration
		ctx, stop := watch(cut, nil, &stopped, &left).Watch(context.Background())
		stop()
		close(cut) // after the stop: nothing watches it any more
		if ctx.Err() == nil || context.Cause(ctx) == errBound || left != 0 || stopped != 0 {
			t.Errorf("after stop: err %v cause %v left %v timers stopped %d; want canceled, not the bound, no timer", ctx.Err(), context.Cause(ctx), left, stopped)
		}
	})
	t.Run("cut before the stop began, bound passes", func(t *testing.T) {
		cut := make(chan struct{})
		close(cut)
		fire := make(chan time.Time, 1)
		var stopped int
		var left time.Duration
		ctx, stop := watch(cut, fire, &stopped, &left).Watch(context.Background())
		fire <- time.Time{}
		<-ctx.Done()
		stop()
		if context.Cause(ctx) != errBound || left != 5*time.Second || stopped != 1 {
			t.Errorf("cause %v left %v timers stopped %d; want the bound, 5s, 1", context.Cause(ctx), left, stopped)
		}
	})
	t.Run("cut, then the stop returns first", func(t *testing.T) {
		cut := make(chan struct{})
		close(cut)
		var stopped int
		var left time.Duration
		ctx, stop := watch(cut, make(chan time.Time), &stopped, &left).Watch(context.Background())
		stop() // the timer never fires: the goroutine must still end
		// The goroutine may see the stop before the cut (both ready):
		// then no timer was started; one started is stopped.
		started := left != 0
		if context.Cause(ctx) == errBound || started != (stopped == 1) || stopped > 1 {
			t.Errorf("cause %v timer started %v, stopped %d times; want not the bound, a started timer stopped once", context.Cause(ctx), started, stopped)
		}
	})
}
