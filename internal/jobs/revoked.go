package jobs

import (
	"context"
	"errors"
	"net/http"
)

// ErrRevoked wraps an Executor's error when the gateway refused the job
// because its tenant has no credential left: a config reload of the
// gateway removed the last API key naming it (gateway/revoke.go). The job did not
// run and must not run later: nobody holds a key that may spend capacity
// in its name, nor read its result. The worker ends it failed with
// CodeRevoked (revoke), not counting the attempt, and cancels its batch,
// whose lines still queued then end batch_cancelled without reaching a
// backend, as on a client's cancel.
var ErrRevoked = errors.New("the job's tenant has no API key left: the key was removed by a config reload")

// CodeRevoked is the error code of a job ended by ErrRevoked, the code a
// request under a removed key gets (401 api_key_revoked).
const CodeRevoked = "api_key_revoked"

// StatusRevoked is the status the gateway's worker route answers a
// revoked job with (code CodeRevoked): not 401 or 403, which say the
// worker's own credential was refused (the job goes back to the queue),
// and a status a worker of a release before this one records as the
// job's failed answer, instead of running it or retrying it for ever.
const StatusRevoked = http.StatusGone

// revokedMessage is the job's error message: no key, no tenant name (the
// job's owner reads it, should the tenant get a key again).
const revokedMessage = "the job was not run: the API key it was submitted with was removed from the gateway's configuration, and no key of its owner remains"

// revoke ends a job whose execution the gateway refused with ErrRevoked:
// its batch cancelled, then the job failed with CodeRevoked, the attempt
// not counted (nothing ran). rec is the job as run started it.
func (w *worker) revoke(ctx context.Context, d *delivery, rec *jobRecord) {
	s := w.s
	w.cancelRevokedBatch(ctx, rec)
	seq, nd := d.meta.Sequence.Stream, d.meta.NumDelivered
	var r *jobRecord
	var changed bool
	err := w.whileAway(d, "ending revoked job", func() (err error) {
		r, changed, err = s.transition(ctx, d.key, func(r *jobRecord) error {
			if r.Job.Status != StatusRunning || r.Seq != seq || r.Delivery != nd {
				return errNoChange // finished, or taken over by a redelivery
			}
			r.Job.Attempts--
			r.Job.Status = StatusFailed
			r.Job.FinishedAt = s.now().Unix()
			r.Job.Error = &JobError{Code: CodeRevoked, Message: revokedMessage}
			return nil
		})
		return err
	})
	if err != nil {
		// AckWait brings it back; the gateway refuses it again.
		s.log.Warn("ending revoked job", "key", d.key, "err", err)
		return
	}
	if changed {
		s.stats.revoked.Add(1)
		s.hooks.notify(r)
	}
	_ = d.msg.Ack()
}

// cancelRevokedBatch cancels the batch of a revoked line, before the
// line is ended: the batch's other lines are the same tenant's,
// cancelled they end batch_cancelled at their turn (settled), with no
// execution and no gateway call, and the batch ends cancelled with its
// files. Cancelled after the line's end instead, a batch whose lines
// were all taken (a small batch, free slots) could be seen with every
// line ended and finalized completed first.
func (w *worker) cancelRevokedBatch(ctx context.Context, rec *jobRecord) {
	if rec.Job.BatchID == "" {
		return
	}
	s := w.s
	_, err := s.CancelBatch(ctx, rec.Tenant, rec.Job.BatchID)
	switch {
	case err == nil, errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
		// Cancelled now, or already ending.
	default:
		// The next line's refusal tries again.
		s.log.Warn("cancelling the batch of a revoked job", "batch", rec.Job.BatchID, "err", err)
	}
}
