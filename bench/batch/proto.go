package main

// PROTOTYPES, not Sluice's behaviour: two ways for job workers to leave
// room for interactive traffic, run by the benchmark's own workers (legs C
// and D, --headroom and --preempt) to size a change to Sluice's gate. Jobs
// still run through the gateway's own executor; only when a job may start,
// and whether it may be stopped, differ.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/jobs"
)

// headroom lets a job start only while more than reserve slots of its
// pool are free and nothing waits in the pool's admission queue. Sluice's
// own gate (gateway.JobGate) is this with reserve 0: jobs may take the
// last free slot, and the next interactive request then waits for one to
// be released.
//
// The check must be atomic with the job's admission, or workers that pass
// it together overshoot the reserve. From outside the gateway this
// prototype approximates that: checks are serialised, and a job let
// through counts as holding a slot for settle (by then the gateway has
// admitted it and Spare shows it).
type headroom struct {
	gw      *gateway.Gateway
	reserve int

	mu      sync.Mutex
	pending []time.Time // jobs let through within settle
}

const (
	// gatePoll is how often a waiting worker looks again, as Sluice's gate.
	gatePoll = 10 * time.Millisecond
	settle   = 5 * time.Millisecond
	// preemptPoll is how often the preemptor looks for waiting requests.
	preemptPoll = 2 * time.Millisecond
)

// free is the pool's free slots as the gateway sees them (0 while anyone
// waits), summed over model's pools (all pools for "").
func (h *headroom) free(model string) int {
	n := 0
	for name, q := range h.gw.Runtime().Queues() {
		if model == "" || name == model {
			n += q.Spare()
		}
	}
	return n
}

// room reports whether a job could start now; take also claims the room.
func (h *headroom) room(model string, take bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	for len(h.pending) > 0 && now.Sub(h.pending[0]) > settle {
		h.pending = h.pending[1:]
	}
	if h.free(model)-len(h.pending) <= h.reserve {
		return false
	}
	if take {
		h.pending = append(h.pending, now)
	}
	return true
}

func (h *headroom) wait(ctx context.Context, model string, take bool) error {
	if h.room(model, take) {
		return nil
	}
	t := time.NewTicker(gatePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if h.room(model, take) {
				return nil
			}
		}
	}
}

// headroomGate is the worker's jobs.Gate: wait for room before taking a
// message (without claiming it).
type headroomGate struct{ h *headroom }

func (g headroomGate) Wait(ctx context.Context, model string) error {
	return g.h.wait(ctx, model, false)
}

// headroomExecutor claims the room right before running the job.
type headroomExecutor struct {
	h     *headroom
	inner jobs.Executor
}

func (e headroomExecutor) Execute(ctx context.Context, j *jobs.Job) (jobs.Result, error) {
	if err := e.h.wait(ctx, j.Model, true); err != nil {
		return jobs.Result{}, err
	}
	return e.inner.Execute(ctx, j)
}

// preemptor stops running jobs while interactive requests wait in the
// gateway's queue: for each waiting request it cancels the youngest job
// (the least work lost) that has run long enough to hold a slot. The
// cancellation reaches the backend, which frees the slot at once; the
// gateway grants it to the waiting request; the job goes back to the queue
// as "busy", which does not count as an attempt.
type preemptor struct {
	gw *gateway.Gateway

	mu      sync.Mutex
	running map[*runningJob]struct{}
	count   atomic.Int64 // jobs preempted
}

type runningJob struct {
	started   time.Time
	cancel    context.CancelFunc
	preempted atomic.Bool
}

// holdsSlot is how long a job must have run to count as admitted: it was
// let through with a free slot, and admission takes well under this.
const holdsSlot = 2 * time.Millisecond

func (p *preemptor) run(ctx context.Context) {
	t := time.NewTicker(preemptPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		waiting := 0
		for _, q := range p.gw.Runtime().Queues() {
			waiting += q.Stats().Queued // jobs never queue: these are interactive
		}
		if waiting > 0 {
			p.preempt(waiting)
		}
	}
}

// preempt cancels up to n jobs, minus those already being cancelled.
func (p *preemptor) preempt(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var cand []*runningJob
	for j := range p.running {
		switch {
		case j.preempted.Load():
			n-- // its slot is on the way
		case now.Sub(j.started) >= holdsSlot:
			cand = append(cand, j)
		}
	}
	slices.SortFunc(cand, func(a, b *runningJob) int { return b.started.Compare(a.started) }) // youngest first
	for _, j := range cand[:max(min(n, len(cand)), 0)] {
		j.preempted.Store(true)
		j.cancel()
		p.count.Add(1)
	}
}

// preemptExecutor registers each job with the preemptor while it runs.
type preemptExecutor struct {
	p     *preemptor
	inner jobs.Executor
}

// busyBody is the answer of a preempted job: the worker requeues a 503
// without counting an attempt.
var busyBody = []byte(`{"error":{"message":"preempted by interactive traffic","type":"server_error","code":"preempted"}}`)

func (e preemptExecutor) Execute(ctx context.Context, j *jobs.Job) (jobs.Result, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rj := &runningJob{started: time.Now(), cancel: cancel}
	e.p.mu.Lock()
	e.p.running[rj] = struct{}{}
	e.p.mu.Unlock()
	res, err := e.inner.Execute(rctx, j)
	e.p.mu.Lock()
	delete(e.p.running, rj)
	e.p.mu.Unlock()
	if rj.preempted.Load() && ctx.Err() == nil && (err != nil || res.StatusCode/100 != 2) {
		return jobs.Result{StatusCode: 503, Body: busyBody}, nil
	}
	return res, err
}

// protoWorker runs the queue's jobs in this process through the gateway's
// own executor (the same path as its in-gateway workers), behind the
// prototypes: the only difference from Sluice's workers is when a job may
// start and whether it may be stopped.
type protoWorker struct {
	store *jobs.Store
	pre   *preemptor // nil without preemption
	stop  func()
}

func startProtoWorker(ctx context.Context, natsURL string, gw *gateway.Gateway, workers int, spec legSpec, logger *slog.Logger) (*protoWorker, error) {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The gateway's store tracks the batches; this one only runs jobs.
	store, err := jobs.Open(openCtx, jobs.Options{URL: natsURL, Name: "bench-proto-worker", Logger: logger, NoTracker: true})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	w := &protoWorker{store: store}
	exec := gw.JobExecutor()
	if spec.preempt {
		w.pre = &preemptor{gw: gw, running: map[*runningJob]struct{}{}}
		exec = preemptExecutor{p: w.pre, inner: exec}
		wg.Go(func() { w.pre.run(runCtx) })
	}
	h := &headroom{gw: gw, reserve: spec.reserve}
	wg.Go(func() {
		err := store.RunWorker(runCtx, jobs.WorkerOptions{Concurrency: workers,
			Executor: headroomExecutor{h: h, inner: exec}, Gate: headroomGate{h}})
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("prototype worker stopped", "error", err.Error())
		}
	})
	w.stop = func() { stop(); wg.Wait(); store.Close() }
	return w, nil
}
