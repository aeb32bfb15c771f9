package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Batch events: OpenAI tells a project that a batch ended by POSTing an
// event to the webhook endpoints configured for it,
//
//	{"id":"evt_...","object":"event","created_at":<unix>,"type":"batch.completed","data":{"id":"batch_..."}}
//
// (types batch.completed, batch.failed, batch.cancelled, batch.expired),
// signed per Standard Webhooks and verified by the SDKs'
// client.webhooks.unwrap. Sluice sends the same event to every
// Options.BatchWebhooks URL when one of its batches ends, so code written
// against OpenAI's webhooks works unchanged against Sluice.
//
// Delivery is the job webhooks' (webhook.go): the same signed sender, SSRF
// guard, per-destination bounded queues and first round of attempts. An
// event is sent by the process whose compare-and-swap made the batch
// terminal, which happens once per batch however many trackers race, so
// each endpoint gets one event per batch end. Unlike a job's webhook, an
// event has no record to stay pending on: one a queue bound refuses, whose
// round fails, or whose process dies before delivering it is not sent
// again (counted dropped or failed). The batch itself stays readable with
// GET /v1/batches/{id}, which receivers should do anyway: the event
// carries only its id, as OpenAI's does.

// batchEvent is one event for one endpoint.
type batchEvent struct {
	id    string // evt_...: the webhook-id, the same for every endpoint and attempt
	url   string
	batch string
	body  []byte
}

// key is the event's inflight key: one per event and endpoint.
func (e *batchEvent) key() string { return e.id + " " + e.url }

// eventOutcome is how a batch event ended: the outcome label of
// sluice_jobs_batch_events_total.
type eventOutcome int

const (
	eventDelivered eventOutcome = iota
	eventFailed                 // its round of attempts failed, or a permanent answer
	eventDropped                // a queue bound, or the Store closing, kept it out
	numEventOutcomes
)

var eventOutcomeLabels = [numEventOutcomes]string{"delivered", "failed", "dropped"}

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

// batchEnded sends b's event to every configured endpoint. Call it once,
// after the write that made b terminal succeeded.
func (s *Store) batchEnded(b *Batch) {
	if len(s.o.BatchWebhooks) == 0 {
		return
	}
	typ, ok := batchEventType(b.Status)
	if !ok {
		return
	}
	at := b.CreatedAt
	for _, t := range []*int64{b.CompletedAt, b.FailedAt, b.CancelledAt, b.ExpiredAt} {
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
	}{ID: batchEventID(b.ID, typ), Object: "event", CreatedAt: at, Type: typ}
	ev.Data.ID = b.ID
	body, err := json.Marshal(&ev)
	if err != nil {
		s.log.Error("encoding batch event", "batch", b.ID, "err", err)
		return
	}
	for _, u := range s.o.BatchWebhooks {
		reason, ok := s.hooks.enqueue(&hookItem{ev: &batchEvent{id: ev.ID, url: u, batch: b.ID, body: body}})
		if !ok {
			s.hooks.events[eventDropped].Add(1)
			s.log.Warn(dropReasonWhy[reason]+"; the batch event is not sent", "batch", b.ID, "type", typ, "destination", destination(u))
		}
	}
}

// deliverEvent makes one round of attempts: there is no record for a
// later one (see above).
func (w *webhooks) deliverEvent(ctx context.Context, ev *batchEvent) {
	ctx, cancel := context.WithTimeout(ctx, w.s.o.WebhookTimeout)
	defer cancel()
	r := w.round(ctx, "event", ev.url, ev.id, ev.body, 0, webhookAttempts)
	if r.err == nil {
		w.events[eventDelivered].Add(1)
		return
	}
	if w.s.ctx.Err() != nil {
		w.events[eventDropped].Add(1) // cut short by Close
		return
	}
	w.events[eventFailed].Add(1)
	w.s.log.Warn("batch event not delivered: given up", "batch", ev.batch, "event", ev.id, "destination", destination(ev.url),
		"attempts", r.attempts, "err", r.err)
}
