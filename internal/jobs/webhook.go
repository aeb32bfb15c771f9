package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Webhook delivery: a finished single job with a Webhook URL is POSTed its
// public JSON, signed as
//
//	X-Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// (the timestamp inside the MAC lets receivers refuse replays). Delivery is
// best effort: a few retries with backoff within Options.WebhookTimeout,
// from a fixed set of sender goroutines the Store owns, so a slow receiver
// never holds a worker slot. Webhooks queued when the process stops are
// lost; the job record is the durable answer.
const (
	webhookSenders = 4
	webhookQueue   = 1024
)

type webhooks struct {
	s     *Store
	queue chan *Job
}

func newWebhooks(s *Store) *webhooks {
	return &webhooks{s: s, queue: make(chan *Job, webhookQueue)}
}

func (w *webhooks) start(ctx context.Context, wg *sync.WaitGroup) {
	for range webhookSenders {
		wg.Go(func() {
			for {
				select {
				case j := <-w.queue:
					w.deliver(ctx, j)
				case <-ctx.Done():
					return
				}
			}
		})
	}
}

// notify queues r's webhook if it has one; it never blocks.
func (w *webhooks) notify(r *jobRecord) {
	if r.Webhook == "" || r.Job.BatchID != "" {
		return
	}
	select {
	case w.queue <- r.job():
	default:
		w.s.stats.webhookFailed.Add(1)
		w.s.log.Warn("webhook queue full; dropping", "job", r.Job.ID)
	}
}

func (w *webhooks) deliver(ctx context.Context, j *Job) {
	body, err := json.Marshal(j)
	if err != nil {
		w.s.log.Error("encoding webhook", "job", j.ID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.o.WebhookTimeout)
	defer cancel()
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.post(ctx, j, body)
		if err == nil {
			w.s.stats.webhookSent.Add(1)
			return
		}
		w.s.log.Warn("webhook failed", "job", j.ID, "attempt", attempt, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			delay *= 2
		case <-ctx.Done():
			t.Stop()
			w.s.stats.webhookFailed.Add(1)
			return
		}
	}
}

func (w *webhooks) post(ctx context.Context, j *Job, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.Webhook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sluice-Job-Id", j.ID)
	if len(w.s.o.WebhookSecret) > 0 {
		req.Header.Set("X-Sluice-Signature", Sign(w.s.o.WebhookSecret, w.s.now(), body))
	}
	resp, err := w.s.o.WebhookClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// Sign is the X-Sluice-Signature value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}
