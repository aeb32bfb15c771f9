package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Webhook delivery: a finished single job with a Webhook URL is POSTed its
// public JSON, signed (webhooksend.go), best effort:
//
//   - one queue per destination (scheme://host:port), each drained by its
//     own goroutine one delivery at a time, so a slow or dead receiver
//     delays only its own webhooks;
//   - bounded: webhookPerHost waiting per destination, webhookMaxHosts
//     destinations, webhookMaxQueued in all; past a bound the webhook is
//     dropped and counted as failed (the job record is the durable answer);
//   - each attempt within webhookAttemptTimeout; at most webhookAttempts
//     attempts with doubling backoff (or the receiver's Retry-After) within
//     Options.WebhookTimeout, and only after 408, 429, 5xx or a network
//     error: any other answer is final.
//
// Webhooks still queued when the process stops, or cut short by it, stay
// pending on their jobs and are sent again when a worker next starts
// (webhookresend.go): at least once, with the same webhook-id.
const (
	webhookPerHost   = 64
	webhookMaxHosts  = 256
	webhookMaxQueued = 1024
	webhookAttempts  = 5
	webhookBackoff   = 500 * time.Millisecond
)

type webhooks struct {
	s    *Store
	send *webhookSender

	mu     sync.Mutex
	hosts  map[string]chan *Job // destinations with a running drain
	queued int                  // jobs waiting in all of hosts

	// dropped counts webhooks dropped at a bound, by dropReason (also
	// counted as failed): sluice_jobs_webhooks_dropped_total{reason}.
	dropped [numDropReasons]atomic.Uint64
	// resent counts webhooks of finished jobs queued again at start.
	resent     atomic.Uint64
	resendOnce sync.Once
}

// dropReason is why notify dropped a webhook: the reason label's values.
type dropReason int

const (
	dropQueueFull       dropReason = iota // webhookMaxQueued waiting in all
	dropDestinations                      // webhookMaxHosts destinations at once
	dropDestinationFull                   // webhookPerHost waiting for this destination
	dropShuttingDown                      // the Store is closing
	numDropReasons
)

var dropReasonLabels = [numDropReasons]string{"queue_full", "too_many_destinations", "destination_full", "shutting_down"}

// queueDepth is the webhooks waiting now and their destinations, read at
// scrape time.
func (w *webhooks) queueDepth() (queued, destinations int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued, len(w.hosts)
}

func newWebhooks(s *Store) *webhooks {
	return &webhooks{
		s:     s,
		send:  newWebhookSender(s.o.WebhookSecret, s.o.AllowPrivateWebhooks, s.o.Now),
		hosts: make(map[string]chan *Job),
	}
}

// destination is the queue a webhook URL waits in.
func destination(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// notify queues r's webhook if it has one; it never blocks on a receiver
// (a drop is recorded on the job: one store write, outside mu).
func (w *webhooks) notify(r *jobRecord) {
	if r.Webhook == "" || r.Job.BatchID != "" {
		return
	}
	j := r.job()
	reason, ok := w.enqueue(j)
	if ok {
		return
	}
	w.dropped[reason].Add(1)
	w.s.stats.webhookFailed.Add(1)
	w.s.log.Warn(dropReasonWhy[reason]+"; dropping the webhook", "job", j.ID)
	if reason != dropShuttingDown {
		// Shutting down leaves it pending: resent at the next start.
		w.s.recordWebhook(j, WebhookDelivery{Status: WebhookDropped, FailedAt: w.s.now().Unix(), Reason: dropReasonLabels[reason]})
	}
}

var dropReasonWhy = [numDropReasons]string{"webhook queue full", "too many webhook destinations at once",
	"webhook queue of this destination full", "shutting down"}

// enqueue puts j in its destination's queue, starting its drain, or says
// which bound refused it.
func (w *webhooks) enqueue(j *Job) (dropReason, bool) {
	dest := destination(j.Webhook)
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.hosts[dest]
	switch {
	case w.queued >= webhookMaxQueued:
		return dropQueueFull, false
	case q == nil && len(w.hosts) >= webhookMaxHosts:
		return dropDestinations, false
	case q == nil:
		if err := w.s.enter(); err != nil {
			return dropShuttingDown, false
		}
		q = make(chan *Job, webhookPerHost)
		w.hosts[dest] = q
		go func() {
			defer w.s.wg.Done()
			w.drain(dest, q)
		}()
	}
	select {
	case q <- j:
		w.queued++
		return 0, true
	default:
		return dropDestinationFull, false
	}
}

// drain delivers dest's webhooks one after the other and ends when the
// queue is empty (deciding so under mu, so notify never feeds a queue
// nobody drains) or the Store closes.
func (w *webhooks) drain(dest string, q chan *Job) {
	ctx := w.s.ctx
	for ctx.Err() == nil {
		w.mu.Lock()
		var j *Job
		select {
		case j = <-q:
			w.queued--
		default:
			delete(w.hosts, dest)
		}
		w.mu.Unlock()
		if j == nil {
			return
		}
		w.deliver(ctx, j)
	}
	w.mu.Lock()
	w.queued -= len(q)
	delete(w.hosts, dest)
	w.mu.Unlock()
}

// deliver sends j's webhook and records the outcome on the job; one cut
// short by the Store closing stays pending.
func (w *webhooks) deliver(ctx context.Context, j *Job) {
	url := j.Webhook // json:"-": not in the body
	pub := *j
	pub.WebhookState = nil // the outcome of this very delivery: not in its body
	body, err := json.Marshal(&pub)
	if err != nil {
		w.s.log.Error("encoding webhook", "job", j.ID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.o.WebhookTimeout)
	defer cancel()
	delay := webhookBackoff
	for attempt := 1; ; attempt++ {
		err := w.send.send(ctx, url, j.ID, body)
		if err == nil {
			w.s.stats.webhookSent.Add(1)
			w.s.recordWebhook(j, w.s.webhookOutcome(attempt, nil))
			return
		}
		var de *deliveryError
		final := attempt >= webhookAttempts || (errors.As(err, &de) && de.permanent)
		w.s.log.Warn("webhook failed", "job", j.ID, "attempt", attempt, "final", final, "err", err)
		if final {
			w.s.stats.webhookFailed.Add(1)
			w.finish(j, attempt, err)
			return
		}
		wait := delay
		if de != nil && de.retryAfter > wait {
			wait = de.retryAfter
		}
		delay *= 2
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.s.stats.webhookFailed.Add(1)
			w.finish(j, attempt, err)
			return
		}
	}
}

// finish records a delivery that failed after attempts, last with err,
// unless the Store is closing (then it is still pending: not given up,
// cut short).
func (w *webhooks) finish(j *Job, attempts int, err error) {
	if w.s.ctx.Err() != nil {
		return
	}
	w.s.recordWebhook(j, w.s.webhookOutcome(attempts, err))
}
