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

	"github.com/nats-io/nats.go/jetstream"
)

// Webhook delivery: a finished single job with a Webhook URL is POSTed its
// public JSON, signed (webhooksend.go), best effort:
//
//   - one queue per destination (scheme://host:port), each drained by its
//     own goroutine one delivery at a time, so a slow or dead receiver
//     delays only its own webhooks;
//   - bounded: webhookPerHost waiting per destination, webhookMaxHosts
//     destinations, webhookMaxQueued in all; past a bound the webhook is
//     not queued here (counted in dropped) and stays pending on its
//     record, for the sweep to send when there is room;
//   - each attempt within webhookAttemptTimeout; a first round of at most
//     webhookAttempts attempts with doubling, jittered backoff (or the
//     receiver's Retry-After) within Options.WebhookTimeout, and only after
//     408, 429, 5xx or a network error: any other answer is final. A round
//     that ends on such an answer leaves the webhook pending with its next
//     attempt's time, tried by the sweep for up to ~28 h (webhookretry.go).
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
	// maxHeld bounds held (webhookMaxHeld); heldDropped counts the
	// outcomes the bound left unheld: sluice_jobs_webhook_outcomes_dropped_total.
	maxHeld     int
	heldDropped atomic.Uint64

	// dropped counts webhooks a bound kept out of the queues, by
	// dropReason (left pending for the sweep):
	// sluice_jobs_webhooks_dropped_total{reason}.
	dropped [numDropReasons]atomic.Uint64
	// resent counts webhooks of finished jobs queued again by a sweep;
	// resends counts how those ended, by resendOutcome.
	resent  atomic.Uint64
	resends [numResendOutcomes]atomic.Uint64
	// retries counts rounds that ended with the webhook left pending for
	// a later attempt: sluice_jobs_webhook_retries_scheduled_total.
	retries atomic.Uint64
	// events counts batch events (batchevent.go) by eventOutcome:
	// sluice_jobs_batch_events_total{outcome}.
	events [numEventOutcomes]atomic.Uint64
	// sweepAfter is the last index key the previous sweep looked at: the
	// next starts after it, so webhooks waiting hours for their next
	// attempt do not keep a sweep from reaching the rest.
	sweepAfter string
	sweeps     atomic.Uint64 // sweeps run here (tests wait on it)

	streamMu sync.Mutex       // not mu: held across a request
	stream   jetstream.Stream // the jobs bucket's stream, once looked up (jobsStream)
}

// hookItem is a queued webhook: a job's, or a batch event's delivery
// (ev set; batchevent.go). A resent one (resend) is claimed before its
// first attempt from the owner the sweep saw (from).
type hookItem struct {
	j      *Job
	ev     *eventRecord
	resend bool
	retry  bool // its record's NextAttemptAt has come: one attempt
	from   string
	due    int64 // the record's NextAttemptAt the sweep saw
}

// key is what inflight knows the item by (its record's id); target is
// where it goes.
func (it *hookItem) key() string { return it.j.ID }

func (it *hookItem) target() string { return it.j.Webhook }

// resendOutcome is how a resent webhook ended: the outcome label of
// sluice_jobs_webhook_resends_total.
type resendOutcome int

const (
	resendDelivered   resendOutcome = iota
	resendFailed                    // given up after its attempts, or a permanent answer
	resendSkipped                   // claimed by another process, or its outcome recorded meanwhile: not sent
	resendRescheduled               // failed again, its next attempt on the schedule
	numResendOutcomes
)

var resendOutcomeLabels = [numResendOutcomes]string{"delivered", "failed", "skipped", "rescheduled"}

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
		maxHeld:  webhookMaxHeld,
	}
}

// heldOutcomes is the outcomes held for another write now, read at
// scrape time.
func (w *webhooks) heldOutcomes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held)
}

// destination is the queue a webhook URL waits in.
func destination(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// notify queues r's webhook if it has one; it never blocks on a receiver.
// A webhook a bound refuses is not given up: it stays pending on its
// record (indexed, owned by this process, in none of its queues), and
// the sweep queues it once its job finished a lease ago, waiting for
// room then instead of dropping (webhookresend.go). Recording it
// "dropped", as before, lost every webhook of a burst past 64 to one
// slow receiver, for good.
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
	w.s.log.Warn(dropReasonWhy[reason]+"; the webhook is left pending for the sweep to send", "job", j.ID)
}

var dropReasonWhy = [numDropReasons]string{"webhook queue full", "too many webhook destinations at once",
	"webhook queue of this destination full", "shutting down"}

// enqueue puts it in its destination's queue, starting its drain, or
// says which bound refused it.
func (w *webhooks) enqueue(it *hookItem) (dropReason, bool) {
	dest := destination(it.target())
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
		w.inflight[it.key()] = true
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
		delete(w.inflight, it.key())
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
		claimed, err := w.claimResend(ctx, j.ID, it.from, it.due)
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
	if it.ev != nil && w.withdraw(ctx, it) {
		return
	}
	url := j.Webhook // json:"-": not in the body
	kind, id, body := "job", j.ID, []byte(nil)
	if it.ev != nil {
		kind, id, body = "event", it.ev.ID, it.ev.Body
	} else {
		pub := *j
		pub.WebhookState = nil // the outcome of this very delivery: not in its body
		var err error
		if body, err = json.Marshal(&pub); err != nil {
			w.s.log.Error("encoding webhook", "job", j.ID, "err", err)
			return
		}
	}
	prev, tries := 0, webhookAttempts
	if j.WebhookState != nil {
		prev = j.WebhookState.Attempts
	}
	if it.retry {
		tries = 1 // a scheduled retry: one attempt, then the next on the schedule
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.o.WebhookTimeout)
	defer cancel()
	r := w.round(ctx, kind, url, id, body, prev, tries)
	if r.err == nil {
		if it.ev != nil {
			w.events[eventDelivered].Add(1)
		} else {
			w.s.stats.webhookSent.Add(1)
		}
		if it.resend {
			w.resends[resendDelivered].Add(1)
		}
		w.record(j.ID, w.s.webhookOutcome(prev+r.attempts, nil))
		return
	}
	w.endRound(it, prev+r.attempts, r.err, r.permanent, r.notBefore)
}

// withdraw ends, unsent, the batch event it whose endpoint the gateways
// no longer list (batchhooklist.go): recorded failed (endpoint_removed),
// counted and logged. It reports whether it did.
func (w *webhooks) withdraw(ctx context.Context, it *hookItem) bool {
	gen, ok := w.s.withdrawnEndpoint(ctx, it.j)
	if !ok {
		return false
	}
	w.events[eventWithdrawn].Add(1)
	if it.resend {
		w.resends[resendFailed].Add(1)
	}
	st := WebhookDelivery{Status: WebhookFailed, FailedAt: w.s.now().Unix(), Reason: "endpoint_removed"}
	if it.j.WebhookState != nil {
		st.Attempts = it.j.WebhookState.Attempts
	}
	w.s.log.Warn("batch event dropped: its endpoint is no longer in queue.batch_webhooks (removed by a reload or a restart)",
		"batch", it.ev.Batch, "event", it.ev.ID, "destination", destination(it.j.Webhook), "endpoints_generation", gen)
	w.record(it.j.ID, st)
	return true
}

// roundResult is how a round of attempts ended: delivered (err nil)
// after attempts, or failed with err, permanently or worth retrying
// not before notBefore (the receiver's Retry-After).
type roundResult struct {
	attempts  int
	err       error
	permanent bool
	notBefore time.Duration
}

// round makes up to tries attempts to deliver body to url as webhook-id
// id within ctx, with doubling, jittered backoff (or the receiver's
// Retry-After) between them; prev is the attempts made before, for the
// log, where kind names what id is. Job webhooks and batch events
// (batchevent.go) both deliver through it.
func (w *webhooks) round(ctx context.Context, kind, url, id string, body []byte, prev, tries int) roundResult {
	delay := webhookBackoff
	for attempt := 1; ; attempt++ {
		err := w.send.send(ctx, url, id, body)
		if err == nil {
			return roundResult{attempts: attempt}
		}
		var de *deliveryError
		permanent := errors.As(err, &de) && de.permanent
		wait, notBefore := w.s.jitter(delay), time.Duration(0)
		if de != nil && de.retryAfter > 0 {
			notBefore = de.retryAfter
			wait = max(wait, de.retryAfter)
		}
		delay *= 2
		// A wait past the round's budget ends the round now: the schedule
		// takes it from there, and the destination's queue moves on.
		dl, _ := ctx.Deadline()
		last := permanent || attempt >= tries || time.Until(dl) < wait
		w.s.log.Warn("webhook failed", kind, id, "attempt", prev+attempt, "last_of_round", last, "permanent", permanent, "err", err)
		if last {
			return roundResult{attempt, err, permanent, notBefore}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return roundResult{attempts: attempt, err: err}
		}
	}
}

// endRound records a round of attempts that failed, the last with err:
// pending with its next attempt's time when it is worth retrying and the
// schedule has one left (webhookretry.go), else failed. Nothing is
// written while the Store closes: the webhook stays pending, as it was,
// and a live process's sweep sends it.
func (w *webhooks) endRound(it *hookItem, attempts int, err error, permanent bool, notBefore time.Duration) {
	if w.s.ctx.Err() != nil {
		return
	}
	st := w.s.webhookOutcome(attempts, err)
	if !permanent {
		now := w.s.now()
		if at, ok := w.s.nextRetry(time.Unix(it.j.FinishedAt, 0), now, now.Add(notBefore)); ok {
			st.Status, st.FailedAt, st.NextAttemptAt = WebhookPending, 0, at.Unix()
			// Each retry counted once: a job's in the retries counter, a
			// batch event's in its own (before, in both).
			if it.ev != nil {
				w.events[eventRescheduled].Add(1)
			} else {
				w.retries.Add(1)
			}
			if it.resend {
				w.resends[resendRescheduled].Add(1)
			}
			w.record(it.j.ID, st)
			return
		}
	}
	if it.ev != nil {
		w.events[eventFailed].Add(1)
		w.s.log.Warn("batch event not delivered: given up", "batch", it.ev.Batch, "event", it.ev.ID,
			"destination", destination(it.j.Webhook), "attempts", attempts, "err", err)
	} else {
		w.s.stats.webhookFailed.Add(1)
	}
	if it.resend {
		w.resends[resendFailed].Add(1)
	}
	w.record(it.j.ID, st)
}

// webhookMaxHeld bounds the outcomes held for another write; past it an
// outcome is dropped (its webhook is then sent again: at least once),
// and counted.
const webhookMaxHeld = webhookMaxQueued

// record writes id's final outcome, or holds it for run to write again:
// a delivered webhook whose record still said pending would be resent.
func (w *webhooks) record(id string, st WebhookDelivery) {
	if err := w.s.recordWebhook(id, st); err == nil || errors.Is(err, ErrNotFound) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, again := w.held[id]; again || len(w.held) < w.maxHeld {
		w.held[id] = st
		return
	}
	w.heldDropped.Add(1)
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
