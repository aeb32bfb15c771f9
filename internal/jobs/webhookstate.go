package jobs

import (
	"context"
	"errors"
)

// recordWebhook writes a job's webhook outcome on its record (the
// "webhook" object of GET /v1/jobs/{id}). It is a record update of an
// accepted job, like a result: it is not subject to admission's
// headroom line, only to the hard bound the server enforces, and a
// refusal there (or NATS away) leaves the record as it was, logged and
// returned (the caller holds a final outcome to write it again): the
// delivery itself is not affected.
func (s *Store) recordWebhook(id string, st WebhookDelivery) error {
	// Not s.ctx: an outcome reached as the Store closes is still written
	// (Close waits for this goroutine before draining the connection).
	ctx, cancel := context.WithTimeout(context.Background(), s.o.RequestTimeout)
	defer cancel()
	_, _, err := s.transition(ctx, hookRecordKey(id), func(r *jobRecord) error {
		if r.Job.WebhookState == nil || r.Job.WebhookState.Status != WebhookPending {
			return errNoChange // not a webhook job (an older record), or already final
		}
		// (pending to pending: a round failed, NextAttemptAt set)
		r.Job.WebhookState = &st
		return nil
	})
	if err == nil && st.Status != WebhookPending {
		s.unindexWebhook(ctx, id) // final; a pending one waits for its next attempt
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Warn("recording the webhook outcome", "job", id, "status", st.Status, "err", s.storeFull(err))
	}
	return err
}

// webhookOutcome is the record of a delivery that ended after attempts
// with err (nil: delivered).
func (s *Store) webhookOutcome(attempts int, err error) WebhookDelivery {
	now := s.now().Unix()
	if err == nil {
		return WebhookDelivery{Status: WebhookDelivered, Attempts: attempts, DeliveredAt: now}
	}
	st := WebhookDelivery{Status: WebhookFailed, Attempts: attempts, FailedAt: now, Reason: "network_error"}
	var de *deliveryError
	if errors.As(err, &de) {
		st.StatusCode, st.Reason = de.status, de.reason
	} else if errors.Is(err, context.DeadlineExceeded) {
		st.Reason = "timeout"
	}
	return st
}
