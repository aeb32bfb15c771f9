package jobs

import "time"

// Retries past the first round. A delivery's first round is up to
// webhookAttempts attempts seconds apart (deliver); a receiver down for
// longer than that (a deploy, a restart, an outage of minutes) used to
// lose the webhook, recorded failed after ~8 s. Receivers of OpenAI's
// webhooks expect retries "with exponential backoff for up to 72 hours",
// and Standard Webhooks senders (Svix) retry over ~28 hours. So a round
// that ends on an answer worth retrying (408, 429, 5xx, a network error,
// the round's budget) leaves the webhook pending on its record with the
// time of its next attempt (WebhookDelivery.NextAttemptAt), and the sweep
// (webhookresend.go) of whichever live process holds the sweep lease
// queues it once that time has come, for one attempt. The schedule is
// kept on the record, so it survives restarts and moves between replicas;
// the webhook-id stays the job id.
//
// webhookRetryAt are the next attempts' offsets from the job's finish:
// 1 min, 6 min, 36 min, 2 h 36, 7 h 36, 17 h 36, 27 h 36 (Svix's gaps of
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, the first two in the round).
// Past the last one, or past the record's retention, the webhook is failed.
var webhookRetryAt = [...]time.Duration{
	time.Minute, 6 * time.Minute, 36 * time.Minute, 2*time.Hour + 36*time.Minute,
	7*time.Hour + 36*time.Minute, 17*time.Hour + 36*time.Minute, 27*time.Hour + 36*time.Minute,
}

// nextRetry is when the webhook of a job finished at finished, whose
// round ended at now (not before notBefore: the receiver's Retry-After),
// is tried next; false when it is given up. Each offset is moved later
// by up to a fifth of the gap before it, so the retries of many webhooks
// that failed together (one receiver down) do not all come back at once.
func (s *Store) nextRetry(finished, now, notBefore time.Time) (time.Time, bool) {
	prev := time.Duration(0)
	for _, off := range webhookRetryAt {
		gap := off - prev
		prev = off
		// A step whose time (before its jitter) has come is the one this
		// round just made, or one missed: the next step is due.
		if !finished.Add(off).After(now) {
			continue
		}
		at := finished.Add(off + s.randN(gap/5+1))
		if at.Before(notBefore) {
			continue
		}
		if at.After(finished.Add(s.o.Retention)) {
			break // the record is gone by then
		}
		return at, true
	}
	return time.Time{}, false
}
