package jobs

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Pending webhooks outlive the process that would have sent them. A job
// submitted with a webhook gets an index key, w.<id>, in the jobs bucket
// next to its record; recordWebhook deletes it once the outcome is final.
// When a Store's first worker starts, it lists the index and queues again
// every finished job whose webhook is still pending: those queued or in
// flight when a process stopped (or when it died). The resent webhook
// has the same webhook-id, the job id, so receivers deduplicate it: a
// webhook is delivered at least once, and twice when a process stopped
// between the receiver's answer and the record of it, or when two
// processes start resending at once.
//
// The resend goes through the same queues as any webhook (per
// destination, webhookAttempts each) but waits for room instead of
// dropping: past a bound it lists again after TrackInterval, so 1,000
// pending webhooks to one receiver are all sent, 64 waiting at a time.

func webhookIndexKey(id string) string { return "w." + id }

// webhookIndexFilter lists the index keys.
const webhookIndexFilter = "w.>"

// indexWebhook records that id's webhook is pending. Failing it is
// logged: the webhook is still sent by this process, only not resent
// after a restart.
func (s *Store) indexWebhook(ctx context.Context, id string) {
	if _, err := s.jobs.Put(ctx, webhookIndexKey(id), nil); err != nil {
		s.log.Warn("indexing a pending webhook: not resent if the process stops before sending it", "job", id, "err", s.storeFull(err))
	}
}

// unindexWebhook forgets id's webhook, whose outcome is recorded.
func (s *Store) unindexWebhook(ctx context.Context, id string) {
	if err := s.jobs.Delete(ctx, webhookIndexKey(id)); err != nil {
		s.log.Debug("removing a webhook index key (retention removes it)", "job", id, "err", err)
	}
}

// startResend starts the resend of pending webhooks, once per Store.
func (w *webhooks) startResend() {
	w.resendOnce.Do(func() {
		if len(w.s.o.WebhookSecret) == 0 || w.s.enter() != nil {
			return // unsigned webhooks are never sent; or closing
		}
		go func() {
			defer w.s.wg.Done()
			w.resend(w.s.ctx)
		}()
	})
}

// resend queues the pending webhooks of finished jobs until every one
// found has been queued once, listing again after TrackInterval while a
// queue bound or an error held some back.
func (w *webhooks) resend(ctx context.Context) {
	queued := map[string]bool{}
	for {
		more, err := w.resendPass(ctx, queued)
		if err != nil && ctx.Err() == nil {
			w.s.log.Warn("resending pending webhooks", "err", err)
		}
		if !more && err == nil {
			return
		}
		t := time.NewTimer(w.s.o.TrackInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// resendPass lists the index once and queues what it can; more reports
// webhooks held back by a bound.
func (w *webhooks) resendPass(ctx context.Context, queued map[string]bool) (more bool, err error) {
	keys, err := listKeys(ctx, w.s.jobs, webhookIndexFilter)
	if err != nil {
		return false, err
	}
	for _, key := range keys {
		id := strings.TrimPrefix(key, "w.")
		if queued[id] {
			continue
		}
		r, _, err := w.s.getJob(ctx, singleKey(id))
		switch {
		case errors.Is(err, ErrNotFound):
			w.s.unindexWebhook(ctx, id) // expired, or its submit failed
			continue
		case err != nil:
			return more, err
		case r.Job.WebhookState == nil || r.Job.WebhookState.Status != WebhookPending:
			w.s.unindexWebhook(ctx, id)
			continue
		case !r.Job.Status.Terminal() || r.Webhook == "":
			continue // its worker sends it when the job finishes
		}
		reason, ok := w.enqueue(r.job())
		if !ok {
			if reason == dropShuttingDown {
				return false, nil
			}
			more = true
			continue
		}
		queued[id] = true
		w.resent.Add(1)
	}
	return more, nil
}
