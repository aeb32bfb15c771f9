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
// pending on their jobs and are sent again by a live process's sweep
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

	mu       sync.Mutex
	hosts    map[string]chan *hookItem  // destinations with a running drain
	queued   int                        // jobs waiting in all of hosts
	inflight map[string]bool            // job ids queued or being delivered here
	held     map[string]WebhookDelivery // outcomes whose write failed, written again by run

	// dropped counts webhooks dropped at a bound, by dropReason (also
	// counted as failed): sluice_jobs_webhooks_dropped_total{reason}.
	dropped [numDropReasons]atomic.Uint64
	// resent counts webhooks of finished jobs queued again by a sweep;
	// resends counts how those ended, by resendOutcome.
	resent  atomic.Uint64
	resends [numResendOutcomes]atomic.Uint64
	sweeps  atomic.Uint64 // sweeps run here (tests wait on it)
}

// hookItem is a queued webhook. A resent one (resend) is claimed before
// its first attempt from the owner the sweep saw (from).
type hookItem struct {
	j      *Job
	resend bool
	from   string
}

// resendOutcome is how a resent webhook ended: the outcome label of
// sluice_jobs_webhook_resends_total.
type resendOutcome int

const (
	resendDelivered resendOutcome = iota
	resendFailed                  // given up after its attempts, or a permanent answer
	resendSkipped                 // claimed by another process, or its outcome recorded meanwhile: not sent
	numResendOutcomes
)

var resendOutcomeLabels = [numResendOutcomes]string{"delivered", "failed", "skipped"}

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
		s:        s,
		send:     newWebhookSender(s.o.WebhookSecret, s.o.AllowPrivateWebhooks, s.o.Now),
		hosts:    make(map[string]chan *hookItem),
		inflight: make(map[string]bool),
		held:     make(map[string]WebhookDelivery),
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
	reason, ok := w.enqueue(&hookItem{j: j})
	if ok {
		return
	}
	w.dropped[reason].Add(1)
	w.s.stats.webhookFailed.Add(1)
	w.s.log.Warn(dropReasonWhy[reason]+"; dropping the webhook", "job", j.ID)
	if reason != dropShuttingDown {
		// Shutting down leaves it pending: resent at the next start.
		_ = w.s.recordWebhook(j.ID, WebhookDelivery{Status: WebhookDropped, FailedAt: w.s.now().Unix(), Reason: dropReasonLabels[reason]})
	}
}

var dropReasonWhy = [numDropReasons]string{"webhook queue full", "too many webhook destinations at once",
	"webhook queue of this destination full", "shutting down"}

// enqueue puts it in its destination's queue, starting its drain, or
// says which bound refused it.
func (w *webhooks) enqueue(it *hookItem) (dropReason, bool) {
	dest := destination(it.j.Webhook)
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
		q = make(chan *hookItem, webhookPerHost)
		w.hosts[dest] = q
		go func() {
			defer w.s.wg.Done()
			w.drain(dest, q)
		}()
	}
	select {
	case q <- it:
		w.queued++
		w.inflight[it.j.ID] = true
		return 0, true
	default:
		return dropDestinationFull, false
	}
}

// drain delivers dest's webhooks one after the other and ends when the
// queue is empty (deciding so under mu, so notify never feeds a queue
// nobody drains) or the Store closes.
func (w *webhooks) drain(dest string, q chan *hookItem) {
	ctx := w.s.ctx
	for ctx.Err() == nil {
		w.mu.Lock()
		var it *hookItem
		select {
		case it = <-q:
			w.queued--
		default:
			delete(w.hosts, dest)
		}
		w.mu.Unlock()
		if it == nil {
			return
		}
		w.deliver(ctx, it)
		w.mu.Lock()
		delete(w.inflight, it.j.ID)
		w.mu.Unlock()
	}
	w.mu.Lock()
	w.queued -= len(q)
	delete(w.hosts, dest)
	w.mu.Unlock()
}

// busy reports whether id's webhook is this process's now: queued,
// being delivered, or its outcome waiting to be written.
func (w *webhooks) busy(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, held := w.held[id]
	return w.inflight[id] || held
}

// deliver sends the webhook and records the outcome on the job; one cut
// short by the Store closing stays pending. A resend is claimed first,
// and not sent when the claim fails.
func (w *webhooks) deliver(ctx context.Context, it *hookItem) {
	j := it.j
	if it.resend {
		claimed, err := w.claimResend(ctx, j.ID, it.from)
		switch {
		case err != nil && !errors.Is(err, ErrNotFound):
			if ctx.Err() == nil {
				w.s.log.Warn("claiming a pending webhook to resend it: left for the next sweep", "job", j.ID, "err", err)
			}
			return
		case err != nil || !claimed:
			w.resends[resendSkipped].Add(1)
			return
		}
	}
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
			if it.resend {
				w.resends[resendDelivered].Add(1)
			}
			w.record(j.ID, w.s.webhookOutcome(attempt, nil))
			return
		}
		var de *deliveryError
		final := attempt >= webhookAttempts || (errors.As(err, &de) && de.permanent)
		w.s.log.Warn("webhook failed", "job", j.ID, "attempt", attempt, "final", final, "err", err)
		if final {
			w.s.stats.webhookFailed.Add(1)
			if it.resend {
				w.resends[resendFailed].Add(1)
			}
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
	w.record(j.ID, w.s.webhookOutcome(attempts, err))
}

// webhookMaxHeld bounds the outcomes held for another write; past it an
// outcome is dropped (its webhook is then sent again: at least once).
const webhookMaxHeld = webhookMaxQueued

// record writes id's final outcome, or holds it for run to write again:
// a delivered webhook whose record still said pending would be resent.
func (w *webhooks) record(id string, st WebhookDelivery) {
	if err := w.s.recordWebhook(id, st); err == nil || errors.Is(err, ErrNotFound) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) < webhookMaxHeld {
		w.held[id] = st
	}
}

// writeHeld writes the held outcomes again.
func (w *webhooks) writeHeld() {
	w.mu.Lock()
	held := make(map[string]WebhookDelivery, len(w.held))
	for id, st := range w.held {
		held[id] = st
	}
	w.mu.Unlock()
	for id, st := range held {
		err := w.s.recordWebhook(id, st)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return // the store still refuses: the next interval
		}
		w.mu.Lock()
		delete(w.held, id)
		w.mu.Unlock()
	}
}
