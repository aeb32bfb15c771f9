package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WorkerOptions configures RunWorker.
type WorkerOptions struct {
	// Concurrency is how many jobs run at once, default 1.
	Concurrency int
	// Executor runs the jobs (required).
	Executor Executor
	// Gate, when set, is asked before a message is taken and again for
	// the job's model before it runs.
	Gate Gate
	// Classes are the job classes taken, most preferred first; default
	// "interactive", "batch".
	Classes []string
	// PollWait is the longest one pull waits for a message, default 1s;
	// an idle worker holds one such pull per class, whatever its
	// Concurrency (see dispatcher). It also bounds how long an idle
	// worker takes to notice shutdown: a pull is not abandoned half-way,
	// because the server could hand it a message no one would then hold
	// until AckWait.
	PollWait time.Duration
	// Grace is how long running jobs may finish after ctx ends before
	// their executions are cancelled and the jobs requeued, default 5s;
	// with Cut set and Grace 0, no bound of its own: running jobs finish
	// or are cut by Cut.
	Grace time.Duration
	// Cut, when set, ends the worker at once when closed: it stops taking
	// jobs, and running executions are cancelled and their jobs requeued
	// without counting the attempt, whatever is left of Grace. The
	// gateway closes it at the end of its drain (shutdown_grace over, or a
	// second signal); `sluice worker` at the second signal.
	Cut <-chan struct{}

	// ticker paces a message's heartbeats, default newTicker; tests
	// inject one to tick the heartbeat themselves instead of waiting for
	// real AckWaits to pass.
	ticker func(every time.Duration) (ticks <-chan time.Time, stop func())
	// pauseTimer paces the backoff of a pause on a full store (its first
	// tick ends it), default newTicker; tests inject one to end backoffs
	// themselves.
	pauseTimer func(d time.Duration) (fire <-chan time.Time, stop func())
	// classTimer paces the retries of a class whose consumer could not be
	// created (its first tick ends a wait), default newTicker; tests
	// inject one to end the waits themselves (classretry.go).
	classTimer func(d time.Duration) (fire <-chan time.Time, stop func())
	// consumerMade, when set, is called as a retry has made a class's
	// consumer, before the class is pulled again: tests take the
	// consumer away there, as a consumer whose pulls get 503 is.
	consumerMade func(class string)
}

// newTicker is the heartbeat's real clock.
func newTicker(every time.Duration) (ticks <-chan time.Time, stop func()) {
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// orphanGrace is how long a message may wait for its record (Submit
// publishes before it writes) before it is taken for a submitter's crash.
const orphanGrace = time.Minute

// RunWorker takes jobs from the queue and executes them until ctx ends,
// Cut closes or the Store closes. It then stops taking jobs, gives running
// ones Grace to finish (none after Cut), cancels the rest and requeues
// them, and returns nil. It returns an error only if it cannot start (an
// invalid class, a Store closed); NATS being away is not such a reason,
// it waits for NATS, and neither is a class whose consumer cannot be
// created: that class waits, retried, and the others run (classretry.go).
func (s *Store) RunWorker(ctx context.Context, o WorkerOptions) error {
	if err := o.settle(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.ctx, stop)()
	// Executions get their own context: ending ctx stops the taking of
	// jobs at once but gives running ones Grace; Cut ends both at once.
	execCtx, execCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer execCancel()
	if o.Cut != nil {
		defer watchCut(o.Cut, stop, execCancel)()
	}

	w := &worker{s: s, o: o, stop: runCtx, pause: newStorePause(s, runCtx, o)}
	down, started := s.startConsumers(runCtx, o)
	if !started {
		return nil // stopped before it started
	}
	w.runSlots(runCtx, execCtx, execCancel, down)
	return nil
}

// settle checks o and fills in its defaults.
func (o *WorkerOptions) settle() error {
	if o.Executor == nil {
		return errors.New("jobs: RunWorker needs an Executor")
	}
	o.Concurrency = max(o.Concurrency, 1)
	if len(o.Classes) == 0 {
		o.Classes = defaultClasses()
	}
	if o.PollWait <= 0 {
		o.PollWait = time.Second
	}
	if o.Grace <= 0 && o.Cut == nil {
		o.Grace = 5 * time.Second
	}
	if o.ticker == nil {
		o.ticker = newTicker
	}
	if o.classTimer == nil {
		o.classTimer = newTicker
	}
	for _, class := range o.Classes {
		if !validToken.MatchString(class) {
			return fmt.Errorf("jobs: invalid class %q", class)
		}
	}
	return nil
}

// watchCut ends the taking of jobs (stop) and running executions
// (execCancel) when cut closes; the function it returns ends the watch
// and waits for its goroutine.
func watchCut(cut <-chan struct{}, stop, execCancel context.CancelFunc) (end func()) {
	var cutWatch sync.WaitGroup
	ended := make(chan struct{})
	cutWatch.Go(func() {
		select {
		case <-cut:
			stop()
			execCancel()
		case <-ended:
		}
	})
	return func() {
		close(ended)
		cutWatch.Wait()
	}
}

// classDownAtStart is a class whose consumer could not be created when
// the worker started (the i-th of WorkerOptions.Classes).
type classDownAtStart struct {
	class string
	i     int
	err   error
}

// startConsumers creates each class's consumer, waiting for NATS while it
// is away; a class whose consumer cannot be created is down, to wait
// alone, retried (classretry.go), while the others start. started is
// false when runCtx ended first.
func (s *Store) startConsumers(runCtx context.Context, o WorkerOptions) (down []classDownAtStart, started bool) {
	for i, class := range o.Classes {
		_, err := s.consumer(runCtx, class)
		// NATS away (an outage, or a slow server timing the call out):
		// wait for it as the slots do. Giving up would leave this process
		// without workers after NATS is back.
		if err != nil && IsUnavailable(err) {
			s.log.Warn("NATS away: the worker starts when it is back", "class", class, "err", err)
		}
		for err != nil && IsUnavailable(err) && runCtx.Err() == nil {
			sleep(runCtx, o.PollWait)
			_, err = s.consumer(runCtx, class)
		}
		if runCtx.Err() != nil {
			return nil, false
		}
		if err != nil {
			down = append(down, classDownAtStart{class, i, err})
		}
	}
	return down, true
}

// runSlots runs the dispatcher, the retries of the classes down at start
// and the slots until runCtx ends, then gives running executions Grace
// (execCancel ends them) and returns once the slots and retries have.
func (w *worker) runSlots(runCtx, execCtx context.Context, execCancel context.CancelFunc, down []classDownAtStart) {
	s, o := w.s, w.o
	d := newDispatcher(s.nc, o.Classes, o, s.log)
	d.stalled = w.pause.stalled
	var retries sync.WaitGroup
	defer retries.Wait()
	for _, f := range down {
		d.down[f.i] = true
	}
	// A class whose consumer went away under the dispatcher (gone.go) is
	// retried as one down at start. One retry (an episode) per class down
	// at a time, until a pull on the class is answered (classretry.go).
	retries.Go(func() {
		episodes := make([]chan bool, len(o.Classes)) // by class; nil: up
		begin := func(i int, err error) {
			ch := make(chan bool, 1)
			episodes[i] = ch
			retries.Go(func() { w.retryConsumer(runCtx, o.Classes[i], i, err, d.up, ch) })
		}
		tell := func(ch chan bool, pulled bool) {
			select {
			case ch <- pulled:
			case <-runCtx.Done():
			}
		}
		for _, f := range down {
			begin(f.i, f.err)
		}
		for {
			select {
			case i := <-d.lost:
				s.stats.classesLost.Add(1)
				if ch := episodes[i]; ch != nil {
					tell(ch, false) // made again, and its pulls answered 503 again
				} else {
					begin(i, errConsumerGone)
				}
			case i := <-d.pulled:
				if ch := episodes[i]; ch != nil {
					episodes[i] = nil
					tell(ch, true)
				}
			case <-runCtx.Done():
				return
			}
		}
	})
	var slots sync.WaitGroup
	slots.Go(func() { d.run(runCtx) })
	for range o.Concurrency {
		slots.Go(func() { w.slot(runCtx, execCtx, d) })
	}
	<-runCtx.Done()
	if o.Grace > 0 {
		t := time.AfterFunc(o.Grace, execCancel)
		defer t.Stop()
	}
	slots.Wait()
	w.pause.finish()
}

// consumer creates or updates the durable pull consumer of a class. A
// work-queue stream forbids overlapping consumers, so each class has one,
// shared by every worker of every process taking that class.
func (s *Store) consumer(ctx context.Context, class string) (jetstream.Consumer, error) {
	if !validToken.MatchString(class) {
		return nil, fmt.Errorf("jobs: invalid class %q", class)
	}
	c, err := s.js.CreateOrUpdateConsumer(ctx, workStream, jetstream.ConsumerConfig{
		Durable:       consumerName(class),
		FilterSubject: workSubjects + class,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.o.AckWait,
		// Attempts are counted in the record, where busy answers do not
		// count; the server must never give up on a message by itself.
		MaxDeliver:    -1,
		MaxAckPending: -1,
		Replicas:      s.o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: creating consumer for class %s: %w", class, err)
	}
	return c, nil
}

// consumerName is the durable consumer of a class.
func consumerName(class string) string { return "jobs-" + class }

type worker struct {
	s     *Store
	o     WorkerOptions
	stop  context.Context // ends when the worker stops taking jobs
	pause *storePause     // on a full store (storepause.go)
}

// slot runs jobs one at a time: it waits for its gate, then for a message
// from the dispatcher, and handles it.
func (w *worker) slot(ctx, execCtx context.Context, d *dispatcher) {
	for ctx.Err() == nil {
		if w.o.Gate != nil {
			if err := w.o.Gate.Wait(ctx, ""); err != nil {
				if ctx.Err() == nil {
					w.s.log.Warn("gate failed", "err", err)
					sleep(ctx, w.o.PollWait)
				}
				continue
			}
		}
		if msg := d.take(ctx); msg != nil {
			w.handle(ctx, execCtx, msg)
		}
	}
}

// jobMsg is what a worker does with a message of the queue (the
// dispatcher's queueMsg; jetstream.Msg has these methods too).
type jobMsg interface {
	Metadata() (*jetstream.MsgMetadata, error)
	Data() []byte
	Ack() error
	Nak() error
	NakWithDelay(delay time.Duration) error
	InProgress() error
	Term() error
}

// delivery is one message being handled.
type delivery struct {
	msg  jobMsg
	meta *jetstream.MsgMetadata
	key  string
}

// handle runs one message's job to its next state and acks or naks it.
func (w *worker) handle(ctx, execCtx context.Context, msg jobMsg) {
	s := w.s
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	d := &delivery{msg: msg, meta: meta, key: string(msg.Data())}
	stopBeat := w.heartbeat(msg)
	defer stopBeat()
	// Bookkeeping must survive shutdown; JetStream's default timeout
	// bounds each call.
	bg := context.WithoutCancel(ctx)

	var rec *jobRecord
	err = w.whileAway(d, "reading job", func() (err error) {
		rec, _, err = s.getJob(bg, d.key)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		// Message times are the server's clock, not ours.
		if time.Since(meta.Timestamp) < orphanGrace {
			_ = msg.NakWithDelay(min(100*time.Millisecond*time.Duration(meta.NumDelivered), 5*time.Second))
			return
		}
		s.stats.orphans.Add(1)
		s.log.Warn("dropping message without a job record", "key", d.key)
		_ = msg.Ack()
		return
	}
	if err != nil {
		s.log.Warn("reading job", "key", d.key, "err", err)
		_ = msg.NakWithDelay(s.o.BusyDelay)
		return
	}
	if w.settled(bg, d, rec) {
		return
	}
	if w.o.Gate != nil {
		if err := w.o.Gate.Wait(ctx, rec.Job.Model); err != nil {
			if ctx.Err() != nil {
				_ = msg.Nak() // shutting down: someone else may run it now
				return
			}
			s.log.Warn("gate failed", "model", rec.Job.Model, "err", err)
			_ = msg.NakWithDelay(s.o.BusyDelay)
			return
		}
	}
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	w.run(bg, execCtx, d)
}

// settled handles a delivery that needs no execution: the job finished,
// runs under another message, or is cancelled (itself or by its batch).
// It reports whether it dealt with the message.
func (w *worker) settled(ctx context.Context, d *delivery, rec *jobRecord) bool {
	s := w.s
	if rec.Job.Status.Terminal() || heldByOther(rec, d.meta.Sequence.Stream) {
		s.stats.duplicates.Add(1)
		_ = d.msg.Ack()
		return true
	}
	code, why := "", ""
	if rec.CancelRequested {
		code, why = "cancelled", "cancelled by the client"
	} else if rec.Job.BatchID != "" {
		var b *batchRecord
		err := w.whileAway(d, "reading batch", func() (err error) {
			b, _, err = s.getBatch(ctx, batchKey(rec.Tenant, rec.Job.BatchID))
			return err
		})
		switch {
		case errors.Is(err, ErrNotFound):
			code, why = "batch_expired", "the batch no longer exists"
		case err != nil:
			s.log.Warn("reading batch", "batch", rec.Job.BatchID, "err", err)
			_ = d.msg.NakWithDelay(s.o.BusyDelay)
			return true
		case b.Batch.Status == batchValidating:
			_ = d.msg.NakWithDelay(min(s.o.BusyDelay, 250*time.Millisecond)) // being enqueued
			return true
		case b.Batch.Status == batchInProgress && b.Batch.ExpiresAt != nil && s.now().Unix() >= *b.Batch.ExpiresAt,
			b.Batch.Status == batchExpired:
			code, why = "batch_expired", "the batch expired before this request ran"
		case b.Batch.Status != batchInProgress:
			code, why = "batch_cancelled", "the batch is "+b.Batch.Status
		}
	}
	if code == "" {
		return false
	}
	var r *jobRecord
	var changed bool
	err := w.whileAway(d, "cancelling job", func() (err error) {
		r, changed, err = s.transition(ctx, d.key, func(r *jobRecord) error {
			if r.Job.Status.Terminal() || (r.Job.Status == StatusRunning && r.Seq != d.meta.Sequence.Stream) {
				return errNoChange
			}
			cancelRecord(r, s.now().Unix(), code, why)
			return nil
		})
		return err
	})
	if err != nil {
		s.log.Warn("cancelling job", "key", d.key, "err", err)
		_ = d.msg.NakWithDelay(s.o.BusyDelay)
		return true
	}
	if changed {
		s.stats.cancelled.Add(1)
		s.hooks.notify(r)
	}
	_ = d.msg.Ack()
	return true
}

// heldByOther reports whether job record r belongs to a message other
// than the one at stream sequence seq: it runs under that one, or was
// requeued by it (requeue keeps Seq), which comes back after its retry
// delay. A job has two messages when a submit stalled republishAfter
// before its record, or took an Idempotency-Key claim over, while the
// first was still in the stream (enqueueAgain); the second, delivered
// during a retry delay, ran the job again at once. A queued record with
// no Seq (never started, or from an older binary) is anyone's.
func heldByOther(r *jobRecord, seq uint64) bool {
	switch r.Job.Status {
	case StatusRunning:
		return r.Seq != seq
	case StatusQueued:
		return r.Seq != 0 && r.Seq != seq
	}
	return false
}

// errSkip aborts the start of a job that turned out not to need running.
var errSkip = errors.New("skip")

// run marks the job running, executes it and records the outcome.
func (w *worker) run(ctx, execCtx context.Context, d *delivery) {
	s := w.s
	seq, nd := d.meta.Sequence.Stream, d.meta.NumDelivered
	lost := false // the previous run died with its worker
	start := func(r *jobRecord) error {
		switch {
		case r.Job.Status.Terminal(), heldByOther(r, seq):
			return errSkip
		case r.Job.Status == StatusRunning && r.Delivery == nd:
			return errNoChange // this delivery's own write, whose answer an outage lost
		case r.CancelRequested:
			cancelRecord(r, s.now().Unix(), "cancelled", "cancelled by the client")
			return nil
		case r.Job.Status == StatusRunning && r.Job.Attempts >= s.o.MaxAttempts:
			lost = true
			r.LastError = fmt.Sprintf("worker lost while running attempt %d", r.Job.Attempts)
			deadRecord(r, s.now().Unix())
			return nil
		}
		r.Job.Status = StatusRunning
		r.Job.Attempts++
		r.Job.StartedAt = s.now().Unix()
		r.Seq, r.Delivery = seq, nd
		return nil
	}
	var rec *jobRecord
	var err error
	for {
		probe, ok := w.pause.admit()
		if !ok {
			_ = d.msg.Nak() // stopping: someone else may run it now
			return
		}
		var changed bool
		lost = false
		err = w.whileAway(d, "starting job", func() (err error) {
			rec, changed, err = s.transition(ctx, d.key, start)
			return err
		})
		// Refused for lack of room: the message stays ours, its job
		// queued, until the pause lets this slot try again.
		if !w.pause.done(probe, writeOutcome(changed, err), &s.stats.startsRefused) {
			break
		}
	}
	switch {
	case errors.Is(err, errSkip):
		s.stats.duplicates.Add(1)
		_ = d.msg.Ack()
		return
	case err != nil:
		s.log.Warn("starting job", "key", d.key, "err", err)
		_ = d.msg.NakWithDelay(s.o.BusyDelay)
		return
	case rec.Job.Status.Terminal():
		w.finished(ctx, d, rec, lost)
		return
	}

	job := rec.job()
	var body jetstream.KeyValueEntry
	err = w.whileAway(d, "reading body", func() (err error) {
		body, err = s.bodies.Get(ctx, d.key)
		return err
	})
	if err != nil {
		w.retry(ctx, d, retryFailed, fmt.Errorf("reading body: %w", err))
		return
	}
	job.Body = body.Value()
	res, err := w.o.Executor.Execute(execCtx, job)
	s.stats.executed.Add(1)
	if errors.Is(err, ErrAnswerTooLarge) {
		s.stats.answersTooLarge.Add(1)
	}
	w.resolve(ctx, execCtx, d, rec, res, err)
}
