package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/app"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// A `sluice worker`'s stop is bounded as the gateway's job queue stop is
// (internal/app: cutBound, queueStopBound; docs/RELIABILITY.md kvwedge
// and jobsclose). Its workers get --grace on the first signal, then
// workerCutBound to hand their jobs back; its store's close (the last
// acks, the drain of its NATS connection) gets workerCloseBound. A NATS
// that answers nothing (a wedged or SIGSTOPped server, a network that
// drops everything) kept the close waiting on the drain of the
// connection until nats.go's DrainTimeout (30 s), and a worker blocked in
// a call on it kept the process for as long as that call: a supervisor's
// kill came first. Past a bound the process exits without it, as after a
// crash: jobs it held run again once their AckWait passes. It then exits
// 1 (app.ErrStopNotClean), as `sluice serve` does past its queue's bound:
// a supervisor sees a stop that was not clean, where before it saw 0.
//
// The whole stop is bounded as serve's is (app.StopBound: grace + 2 s +
// 5 s, what a supervisor's kill timeout must exceed): --grace +
// workerCutBound + workerCloseBound from the first signal. The close
// gets workerCloseBound plus what the workers left of theirs (jobs that
// ended before their grace, none running), so a NATS that is slow but
// answers is waited for as long as the supervisor waits anyway, not cut
// at a fixed 5 s while seconds of the stop's budget go unused.
const (
	workerCutBound   = app.CutBound       // 2 s
	workerCloseBound = app.QueueStopBound // 5 s
)

// errWorkerCloseBound is the close's bound's cause.
var errWorkerCloseBound = errors.New("worker close bound passed")

// stopClock is what waitWorker measures its bound by: the wall clock
// (wallStopClock) or a test's.
type stopClock struct {
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

func wallStopClock() stopClock { return stopClock{now: time.Now, after: time.After} }

// waitWorker waits for RunWorker's end (its result on done). Before ctx
// ends (the first signal) it waits as long as RunWorker runs; from then,
// grace for the running jobs and workerCutBound for them to go back to
// the queue, or workerCutBound from the cut (a second signal) when that
// is sooner: a cut only shortens the bound, so a second signal in its
// last workerCutBound does not carry the stop past --grace + 7 s. It
// reports false when that bound passed first. left is what remained of
// the bound when RunWorker ended after the signal (0 before it): the
// store's close gets it on top of workerCloseBound (closeBound).
func waitWorker(ctx context.Context, done <-chan error, cut <-chan struct{}, grace time.Duration, clk stopClock) (stopped bool, left time.Duration, err error) {
	select {
	case err := <-done:
		if ctx.Err() != nil {
			// Ended by the signal, both seen at once: it has just come,
			// so nothing of the workers' bound is spent.
			return true, app.AddBounds(grace, workerCutBound), err
		}
		return true, 0, err
	case <-ctx.Done():
	}
	due := clk.now().Add(app.AddBounds(grace, workerCutBound))
	bound := clk.after(app.AddBounds(grace, workerCutBound))
	for {
		select {
		case err := <-done:
			return true, max(0, due.Sub(clk.now())), err
		case <-cut:
			cut = nil
			if now := clk.now(); now.Add(workerCutBound).Before(due) {
				due = now.Add(workerCutBound)
				bound = clk.after(workerCutBound)
			}
		case <-bound:
			return false, 0, nil
		}
	}
}

// closeBound is the store close's bound when the workers left left of
// theirs: workerCloseBound and that, so the stop ends by its bound
// (--grace + workerCutBound + workerCloseBound after the first signal)
// whenever the workers ended.
func closeBound(left time.Duration) time.Duration { return app.AddBounds(workerCloseBound, left) }

// closeWorkerStore closes the worker's store within bound (closeBound),
// begun at clk.now(); a second signal during it (cut closing) brings the
// bound to workerCloseBound and what is left of the cut's workerCutBound
// when that is sooner (app.CutWatch, the rule serve's queue stop follows):
// the bound was taken when the close began, so on a NATS that answers
// nothing an idle worker waited --grace + 7 s however often it was
// signalled (review16's "Left"). It says so with one ERROR line when it
// gives the close up, naming the bound it had; closed false then.
func closeWorkerStore(store *jobs.Store, log *slog.Logger, bound time.Duration, cut <-chan struct{}, clk stopClock) (closed bool, named time.Duration) {
	start := clk.now()
	var applied atomic.Int64
	applied.Store(int64(bound))
	ctx, cancel := context.WithTimeoutCause(context.Background(), bound, errWorkerCloseBound)
	defer cancel()
	ctx, stopWatch := app.CutWatch{
		Cut:   cut,
		Left:  func() time.Duration { return cutCloseLeft(bound, clk.now().Sub(start)) },
		Timer: func(d time.Duration) (<-chan time.Time, func()) { return clk.after(d), func() {} },
		Cause: errWorkerCloseBound,
		Shortened: func(left time.Duration) {
			if total := clk.now().Sub(start) + left; total < bound {
				applied.Store(int64(total))
			}
		},
	}.Watch(ctx)
	defer stopWatch()
	if err := store.CloseWithin(ctx); errors.Is(err, jobs.ErrCloseAbandoned) {
		named = time.Duration(applied.Load())
		log.Error("job store did not close within its bound: NATS answers nothing; exiting without it, as after a crash: the jobs this worker held run again after their AckWait",
			"bound", named.Round(time.Second).String())
		return false, named
	}
	return true, time.Duration(applied.Load())
}

// cutCloseLeft is what a close with bound, elapsed into it, has left after
// a second signal: workerCloseBound and what is left of the workers' bound
// (bound less workerCloseBound from the close's start) or of the cut's
// workerCutBound, whichever ends sooner.
func cutCloseLeft(bound, elapsed time.Duration) time.Duration {
	workersLeft := max(0, bound-workerCloseBound-elapsed)
	return workerCloseBound + min(workersLeft, workerCutBound)
}
