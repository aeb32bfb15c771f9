package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Batch events: OpenAI tells a project that a batch ended by POSTing an
// event to the webhook endpoints configured for that project,
//
//	{"id":"evt_...","object":"event","created_at":<unix>,"type":"batch.completed","data":{"id":"batch_..."}}
//
// (types batch.completed, batch.failed, batch.cancelled, batch.expired),
// signed per Standard Webhooks and verified by the SDKs'
// client.webhooks.unwrap. Sluice sends the same event to each
// Options.BatchWebhooks endpoint that receives the batch's tenant, so code
// written against OpenAI's webhooks works unchanged against Sluice, and a
// tenant's endpoint never learns another tenant's batch ids (OpenAI scopes
// webhooks per project; an endpoint without tenants receives every one's,
// for operators with a single tenant).
//
// An event is delivered as a job's webhook is, by the same code: each
// (event, endpoint) pair is a record in the jobs bucket (eventKey, a
// jobRecord whose Event is set, pending from its creation, with its batch's
// end as its FinishedAt) indexed for the sweep (webhookresend.go). So it
// has the job webhooks' guarantees: a queue bound that refuses it, a first
// round that fails (the retry schedule of webhookretry.go: 1 min ...
// 27 h 36 after the batch ended), or its process dying before delivering
// it leaves it pending, and a live process's sweep sends it; a resend is
// claimed once; the outcome is recorded and the index key purged.
//
// The records are written before the batch leaves the active index
// (tracker.go's forget), by whichever tracker sees the batch terminal; a
// tracker killed between the batch's terminal write and its event records
// leaves the batch in the index, and the next tracker to evaluate it
// (after a restart: the first) writes them. Their keys are derived from
// the batch, its end and the endpoint, and written with Create: however
// many trackers race, one record per endpoint exists and only its creator
// queues it, so each endpoint gets one event per batch end (at least once:
// a process dying between the receiver's 2xx and its record sends it
// again, with the same webhook-id).

// BatchEndpoint is an endpoint of batch events and whose batches it hears of.
type BatchEndpoint struct {
	URL string
	// Tenants are the tenants whose batches' ends are sent here; nil:
	// every tenant's.
	Tenants []string
}

// BatchWebhooks are the batch-event endpoints in use now.
func (s *Store) BatchWebhooks() []BatchEndpoint {
	if p := s.batchHooks.Load(); p != nil {
		return *p
	}
	return nil
}

// SetBatchWebhooks replaces the batch-event endpoints (a config reload of
// queue.batch_webhooks), checked as Open checks them; on an error the
// ones in use are kept. A batch that ends from now on has its event sent
// to these. Events already recorded keep the endpoint they were recorded
// for (their record names it): the endpoints that received the batch's
// tenant when the batch ended, which every process sharing the queue
// sends to alike, whatever endpoints its own flags or file name (a
// `sluice worker` is not reloaded with the gateway); with
// Options.RecordBatchWebhooks the list is recorded for every sender, and
// those pending for an endpoint it took out are dropped at their next
// attempt (batchhooklist.go).
func (s *Store) SetBatchWebhooks(endpoints []BatchEndpoint) error {
	if err := CheckBatchEndpoints(endpoints, s.o.AllowPrivateWebhooks); err != nil {
		return err
	}
	if len(endpoints) > 0 && len(s.o.WebhookSecret) == 0 {
		return errors.New("jobs: batch webhook endpoints need the webhook secret, which this process started without")
	}
	endpoints = slices.Clone(endpoints)
	var before []BatchEndpoint
	if p := s.batchHooks.Swap(&endpoints); p != nil {
		before = *p
	}
	s.noteBatchWebhooksChange(s.ctx, before)
	return nil
}

// CheckBatchEndpoints refuses an endpoint no webhook may be sent to (as
// Open and SetBatchWebhooks do), allowPrivate being
// Options.AllowPrivateWebhooks.
func CheckBatchEndpoints(endpoints []BatchEndpoint, allowPrivate bool) error {
	for _, e := range endpoints {
		if err := CheckWebhookURL(e.URL, allowPrivate); err != nil {
			return fmt.Errorf("jobs: batch webhook endpoint: %w", err)
		}
	}
	return nil
}

// receives reports whether tenant's batch events go to e.
func (e BatchEndpoint) receives(tenant string) bool {
	return e.Tenants == nil || slices.Contains(e.Tenants, tenant)
}

// eventRecord, on a record of the jobs bucket, makes it the delivery of
// one batch event to one endpoint (the record's Webhook), not a job.
type eventRecord struct {
	ID    string          `json:"id"` // evt_...: the webhook-id, the same for every endpoint and attempt
	Batch string          `json:"batch"`
	Body  json.RawMessage `json:"body"`
}

// eventKey is the record of the delivery known as id (eventDeliveryID):
// not under j., so no job lookup or listing ever reads one.
func eventKey(id string) string { return "e." + id }

// eventDeliveryID names the delivery of event to url: the event's id and
// a hash of the URL (which need not be a valid key token).
func eventDeliveryID(eventID, url string) string {
	h := sha256.Sum256([]byte(url))
	return eventID + "_" + hex.EncodeToString(h[:8])
}

// hookRecordKey is the record holding the webhook known by id: a batch
// event's delivery (evt_...) or a job's.
func hookRecordKey(id string) string {
	if strings.HasPrefix(id, "evt_") {
		return eventKey(id)
	}
	return singleKey(id)
}

// eventOutcome is how a round of a batch event's delivery ended: the
// outcome label of sluice_jobs_batch_events_total.
type eventOutcome int

const (
	eventDelivered   eventOutcome = iota
	eventFailed                   // a final answer, or the retry schedule exhausted
	eventRescheduled              // its round failed: pending, its next attempt on the schedule
	eventDeferred                 // a queue bound kept it out: pending, for the sweep
	eventWithdrawn                // its endpoint no longer listed (batchhooklist.go): dropped, not sent
	numEventOutcomes
)

var eventOutcomeLabels = [numEventOutcomes]string{"delivered", "failed", "rescheduled", "deferred", "withdrawn"}

// batchEventType is the OpenAI event type of a terminal batch status.
func batchEventType(status string) (string, bool) {
	switch status {
	case batchCompleted, batchFailed, batchCancelled, batchExpired:
		return "batch." + status, true
	}
	return "", false
}

// batchEventID is derived from the batch and the event's type, not random:
// a receiver can deduplicate on webhook-id whatever sent it.
func batchEventID(batchID, typ string) string {
	h := sha256.Sum256([]byte(batchID + "/" + typ))
	return "evt_" + hex.EncodeToString(h[:12])
}

// batchEnded makes sure the terminal batch b has its event's delivery
// record for each endpoint that receives its tenant, and queues those it
// created. Call it after the batch's terminal write, before the batch
// leaves the active index: an error (a record not written) leaves it
// there, for the next evaluation to call it again.
func (s *Store) batchEnded(ctx context.Context, b *batchRecord) error {
	endpoints := s.BatchWebhooks()
	if len(endpoints) == 0 {
		return nil
	}
	typ, ok := batchEventType(b.Batch.Status)
	if !ok {
		return nil
	}
	at := b.Batch.CreatedAt
	for _, t := range []*int64{b.Batch.CompletedAt, b.Batch.FailedAt, b.Batch.CancelledAt, b.Batch.ExpiredAt} {
		if t != nil {
			at = *t
		}
	}
	ev := struct {
		ID        string `json:"id"`
		Object    string `json:"object"`
		CreatedAt int64  `json:"created_at"`
		Type      string `json:"type"`
		Data      struct {
			ID string `json:"id"`
		} `json:"data"`
	}{ID: batchEventID(b.Batch.ID, typ), Object: "event", CreatedAt: at, Type: typ}
	ev.Data.ID = b.Batch.ID
	body, err := json.Marshal(&ev)
	if err != nil {
		return fmt.Errorf("jobs: encoding batch event: %w", err)
	}
	var errs []error
	for _, e := range endpoints {
		if !e.receives(b.Tenant) {
			continue
		}
		id := eventDeliveryID(ev.ID, e.URL)
		rec := &jobRecord{
			Job: Job{ID: id, Object: "event", Status: StatusSucceeded, CreatedAt: at, FinishedAt: at,
				WebhookState: &WebhookDelivery{Status: WebhookPending}},
			Tenant: b.Tenant, Webhook: e.URL, HookOwner: s.owner,
			Event: &eventRecord{ID: ev.ID, Batch: b.Batch.ID, Body: body},
		}
		if err := s.createEvent(ctx, rec); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // written before: by another tracker, or before a restart
			}
			errs = append(errs, err)
			continue
		}
		reason, ok := s.hooks.enqueue(&hookItem{j: rec.job(), ev: rec.Event})
		if !ok {
			s.hooks.events[eventDeferred].Add(1)
			s.log.Warn(dropReasonWhy[reason]+"; the batch event is left pending for the sweep to send",
				"batch", b.Batch.ID, "type", typ, "destination", destination(e.URL))
		}
	}
	return errors.Join(errs...)
}

// createEvent indexes rec's delivery, then creates its record (in that
// order: an index key without a record is cleaned by the sweep, a record
// without one would never be resent).
func (s *Store) createEvent(ctx context.Context, rec *jobRecord) error {
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("jobs: encoding batch event record: %w", err)
	}
	if _, err := s.jobs.Get(ctx, eventKey(rec.Job.ID)); err == nil {
		return jetstream.ErrKeyExists // no second index key for a delivery already recorded
	}
	if _, err := s.jobs.Put(ctx, webhookIndexKey(rec.Job.ID), nil); err != nil {
		return fmt.Errorf("jobs: indexing batch event: %w", s.storeFull(err))
	}
	if _, err := s.jobs.Create(ctx, eventKey(rec.Job.ID), v); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		return fmt.Errorf("jobs: storing batch event: %w", s.storeFull(err))
	}
	return nil
}
