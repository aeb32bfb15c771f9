package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

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
const (
	workerCutBound   = 2 * time.Second
	workerCloseBound = 5 * time.Second
)

// errWorkerCloseBound is the close's bound's cause.
var errWorkerCloseBound = errors.New("worker close bound passed")

// waitWorker waits for RunWorker's end (its result on done). Before ctx
// ends (the first signal) it waits as long as RunWorker runs; from then,
// grace for the running jobs and workerCutBound for them to go back to
// the queue, or workerCutBound from the cut (a second signal). It reports
// false when that bound passed first.
func waitWorker(ctx context.Context, done <-chan error, cut <-chan struct{}, grace time.Duration) (stopped bool, err error) {
	select {
	case err := <-done:
		return true, err
	case <-ctx.Done():
	}
	bound := time.NewTimer(grace + workerCutBound)
	defer bound.Stop()
	for {
		select {
		case err := <-done:
			return true, err
		case <-cut:
			cut = nil
			bound.Reset(workerCutBound)
		case <-bound.C:
			return false, nil
		}
	}
}

// closeWorkerStore closes the worker's store within workerCloseBound,
// saying so with one ERROR line when it gives the close up; false then.
func closeWorkerStore(store *jobs.Store, log *slog.Logger) (closed bool) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), workerCloseBound, errWorkerCloseBound)
	defer cancel()
	if err := store.CloseWithin(ctx); errors.Is(err, jobs.ErrCloseAbandoned) {
		log.Error("job store did not close within its bound: NATS answers nothing; exiting without it, as after a crash: the jobs this worker held run again after their AckWait",
			"bound", workerCloseBound.String())
		return false
	}
	return true
}
