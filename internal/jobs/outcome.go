// How a run ends (resolve): its answer recorded (complete), the job sent
// back to the queue (retry, requeue), or acked once terminal (finished,
// dead-lettered).

package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// resolve sends an execution's outcome where it goes: back to the queue
// (shutdown, the gateway away or busy, a 502 with attempts left), or
// recorded as the job's answer (complete). rec is the job as run started
// it.
func (w *worker) resolve(ctx, execCtx context.Context, d *delivery, rec *jobRecord, res Result, err error) {
	s := w.s
	switch {
	case err != nil && execCtx.Err() != nil:
		w.retry(ctx, d, retryShutdown, err) // cut short by shutdown: not the job's fault
	case errors.Is(err, ErrNotDelivered):
		// The gateway is gone or restarting: the job never ran. Back to
		// the queue as for a busy answer, the attempt not counted.
		w.retryBusy(ctx, d, 0)
	case errors.Is(err, ErrRevoked):
		// No key of the job's tenant is left: ended, never run.
		w.revoke(ctx, d, rec)
	case err != nil:
		w.retry(ctx, d, retryFailed, err)
	case res.StatusCode == 429 || res.StatusCode == 503:
		// No room, or the tenant's rate limit: back to the queue for at
		// least as long as the gateway advised, without counting an attempt.
		w.retryBusy(ctx, d, res.RetryAfter)
	case res.StatusCode == http.StatusBadGateway && rec.Job.Attempts < s.o.MaxAttempts:
		// No backend gave an answer (unreachable, died after the request
		// was sent, a malformed answer): what a waiting client would
		// retry. A counted attempt with backoff; the last one's 502 is
		// the job's answer. Not before the gateway's Retry-After: when
		// the failures left no backend usable, it is the end of the
		// earliest ejection (the gateway's failedPoolRetry), and an
		// attempt before it only tries a dead backend again.
		w.requeue(ctx, d, retryFailed, errors.New("the gateway answered 502: no backend gave an answer"), min(res.RetryAfter, maxAdvisedWait))
	default:
		w.complete(ctx, d, res)
	}
}

// complete records an answer: any status other than 429/503, and a 502
// on the last attempt, is final. A store at its hard bound refusing the
// write does not throw the answer away: the worker holds it and writes it
// once there is room (holdResult).
func (w *worker) complete(ctx context.Context, d *delivery, res Result) {
	s := w.s
	record := func() (rec *jobRecord, changed bool, err error) {
		err = w.whileAway(d, "recording job result", func() (err error) {
			rec, changed, err = s.transition(ctx, d.key, func(r *jobRecord) error {
				if r.Job.Status.Terminal() {
					return errNoChange // expired meanwhile, or another run answered first
				}
				now := s.now().Unix()
				if r.CancelRequested {
					cancelRecord(r, now, "cancelled", "cancelled by the client")
					return nil
				}
				r.Job.Status = StatusFailed
				if res.StatusCode/100 == 2 {
					r.Job.Status = StatusSucceeded
				}
				r.Job.Result = &res
				r.Job.FinishedAt = now
				return nil
			})
			return err
		})
		return rec, changed, err
	}
	rec, changed, err := record()
	if err != nil && isStoreFullErr(err) {
		rec, changed, err = w.holdResult(d, res, err, record)
	}
	if errors.Is(err, errGivenBack) {
		// Stopping with the result unwritten: the message goes back at
		// once, to run again elsewhere once there is room.
		s.log.Warn("recording job result: the worker stops and the job store still refuses it; the job runs again", "key", d.key)
		_ = d.msg.Nak()
		return
	}
	if err != nil {
		// The message comes back after AckWait and the job runs again: at
		// least once, never a lost answer recorded as done.
		s.log.Error("recording job result", "key", d.key, "err", err)
		return
	}
	if changed {
		s.hooks.notify(rec)
	}
	_ = d.msg.Ack()
}

// retryMode says why a job goes back to the queue.
type retryMode int

const (
	retryFailed   retryMode = iota // the attempt failed: it counts, with backoff
	retryBusy                      // no room (429/503): does not count, short delay
	retryShutdown                  // interrupted by shutdown: does not count, no delay
)

// maxAdvisedWait bounds how long a job waits on the gateway's advice (a
// busy answer's, a 502's).
const maxAdvisedWait = 10 * time.Minute

// retryBusy sends the job back to the queue without counting the attempt,
// to run again after the busy delay or the advised wait, whichever is
// longer.
func (w *worker) retryBusy(ctx context.Context, d *delivery, advised time.Duration) {
	w.requeue(ctx, d, retryBusy, nil, min(advised, maxAdvisedWait))
}

// retry sends the job back to the queue, or dead-letters it when a failed
// attempt was its last.
func (w *worker) retry(ctx context.Context, d *delivery, mode retryMode, cause error) {
	w.requeue(ctx, d, mode, cause, 0)
}

func (w *worker) requeue(ctx context.Context, d *delivery, mode retryMode, cause error, advised time.Duration) {
	s := w.s
	seq, nd := d.meta.Sequence.Stream, d.meta.NumDelivered
	record := func() (rec *jobRecord, changed bool, err error) {
		err = w.whileAway(d, "requeueing job", func() (err error) {
			rec, changed, err = s.transition(ctx, d.key, func(r *jobRecord) error {
				if r.Job.Status != StatusRunning || r.Seq != seq || r.Delivery != nd {
					return errNoChange // finished, or taken over by a redelivery
				}
				if mode != retryFailed {
					r.Job.Attempts--
				} else {
					r.LastError = cause.Error()
					if r.Job.Attempts >= s.o.MaxAttempts {
						deadRecord(r, s.now().Unix())
						return nil
					}
				}
				r.Job.Status = StatusQueued
				r.Job.StartedAt = 0
				// Seq stays: this message holds the retry (its delay),
				// another of the job's (a late submit's or a takeover's
				// second, enqueueAgain) is skipped rather than run at once.
				r.Delivery = 0
				return nil
			})
			return err
		})
		return rec, changed, err
	}
	rec, changed, err := record()
	if err != nil && isStoreFullErr(err) {
		// Refused for lack of room. Left unacked, the message came back
		// after AckWait with the job still running under this delivery,
		// which was taken for a lost worker: another attempt counted, or
		// the job dead-lettered on its last. Held as a result is: the
		// slot keeps the message (heartbeats on) and writes this again
		// once the store pause lets a write through.
		w.pause.done(false, err, &s.stats.requeuesRefused)
		rec, changed, err = w.writeWhenRoom(record, &s.stats.requeuesRefused)
	}
	if errors.Is(err, errGivenBack) {
		s.log.Warn("requeueing job: the worker stops and the job store still refuses the write; the job runs again", "key", d.key)
		_ = d.msg.Nak()
		return
	}
	if err != nil {
		s.log.Warn("requeueing job", "key", d.key, "err", err)
		return // AckWait brings it back
	}
	if !changed {
		if rec.Job.Status.Terminal() {
			_ = d.msg.Ack()
		}
		return // a redelivery holds the message now: leave it to that one
	}
	if rec.Job.Status.Terminal() {
		w.finished(ctx, d, rec, true)
		return
	}
	s.stats.retried.Add(1)
	switch mode {
	case retryShutdown:
		_ = d.msg.Nak()
	case retryBusy:
		_ = d.msg.NakWithDelay(max(s.o.BusyDelay*time.Duration(min(max(d.meta.NumDelivered, 1), 5)), advised))
	default:
		_ = d.msg.NakWithDelay(max(min(s.o.RetryDelay<<min(rec.Job.Attempts-1, 20), s.o.MaxRetryDelay), advised))
	}
}

// finished acks a job that reached a terminal state while starting or
// retrying, dead-lettering it first if it ran out of attempts.
func (w *worker) finished(ctx context.Context, d *delivery, rec *jobRecord, dead bool) {
	s := w.s
	if dead && rec.Job.Status == StatusFailed {
		s.stats.dead.Add(1)
		s.log.Warn("job dead-lettered", "job", rec.Job.ID, "attempts", rec.Job.Attempts, "err", rec.LastError)
		if b, err := json.Marshal(rec.job()); err == nil {
			m := &nats.Msg{Subject: deadSubjects + rec.Job.Class, Data: b, Header: nats.Header{"Sluice-Job-Key": []string{d.key}}}
			if _, err := s.js.PublishMsg(ctx, m); err != nil {
				s.log.Warn("publishing dead letter", "job", rec.Job.ID, "err", err) // the record remains
			}
		}
	} else if rec.Job.Status == StatusCancelled {
		s.stats.cancelled.Add(1)
	}
	s.hooks.notify(rec)
	_ = d.msg.Ack()
}

// deadRecord fails r for good. The client sees a fixed message: the last
// error's text is an executor's (transport errors name internal addresses)
// and stays in the record's LastError and the dead-letter log line.
func deadRecord(r *jobRecord, now int64) {
	r.Job.Status = StatusFailed
	r.Job.FinishedAt = now
	r.Job.Error = &JobError{Code: "max_attempts", Message: deadMessage(r.Job.Attempts, r.Job.ID)}
}

func deadMessage(attempts int, id string) string {
	return "the job failed on each of its " + strconv.Itoa(attempts) + " attempts; quote job " + id + " to the operator for the cause"
}
