package jobs

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// A reload of queue.batch_webhooks (SetBatchWebhooks) sends the events
// of batches that end after it to the new endpoints, only them; an
// event recorded before it keeps the endpoint it was recorded for, and
// its retry goes there. Before, the endpoints were fixed at Open (a
// reload changing them was told it needed a restart).
func TestBatchWebhooksReplacedForBatchesEndingAfter(t *testing.T) {
	clk := newClock()
	// The old endpoint asks for 10 minutes: the round ends after one
	// attempt (no wall-clock backoff), its retry is due on the injected
	// clock only, and has the whole WebhookTimeout for one POST.
	before := newEventReceiver(t, http.StatusServiceUnavailable, clk.Now)
	before.retryAfter.Store(600)
	after := newEventReceiver(t, http.StatusOK, clk.Now)
	s, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL, before.URL)
		o.Now, o.WebhookSweepInterval, o.WebhookTimeout = clk.Now, 20*time.Millisecond, time.Minute
	})
	ctx := context.Background()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	b1, err := s.CreateBatch(ctx, batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, s, "acme", b1.ID, batchCompleted)
	eventually(t, "b1's first round to fail", func() bool { return s.hooks.events[eventRescheduled].Load() == 1 })
	if n := acceptedEvents(before)[b1.ID]; n != 1 {
		t.Fatalf("b1's round made %d attempts, want 1 (Retry-After past the round)", n)
	}

	if err := s.SetBatchWebhooks([]BatchEndpoint{{URL: "ftp://hooks.example/x"}}); err == nil {
		t.Fatal("an ftp endpoint taken")
	}
	want := []BatchEndpoint{{URL: after.URL, Tenants: []string{"acme"}}}
	if err := s.SetBatchWebhooks(want); err != nil {
		t.Fatal(err)
	}
	if got := s.BatchWebhooks(); !slices.EqualFunc(got, want, func(a, b BatchEndpoint) bool {
		return a.URL == b.URL && slices.Equal(a.Tenants, b.Tenants)
	}) {
		t.Fatalf("endpoints %+v, want %+v", got, want)
	}
	before.status.Store(http.StatusOK)
	b2, err := s.CreateBatch(ctx, batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, s, "acme", b2.ID, batchCompleted)
	eventually(t, "b2's event at the new endpoint", func() bool { return acceptedEvents(after)[b2.ID] == 1 })

	clk.Advance(43 * time.Minute) // b1's next attempt: the step past 10 min, 36 min + its jitter (a fifth of 30 min)
	eventually(t, "b1's retry at its endpoint", func() bool { return s.hooks.events[eventDelivered].Load() == 2 })
	waitSweeps(t, s, 3)
	if a, b := acceptedEvents(after), acceptedEvents(before); a[b1.ID] != 0 || b[b2.ID] != 0 || a[b2.ID] != 1 || b[b1.ID] != 2 {
		t.Fatalf("new endpoint got %v, old one %v; want b2 once at the new, b1 (recorded before) at the old: its round's attempt and one retry", a, b)
	}
}

// A batch event's failed round is one retry, counted once: in
// sluice_jobs_batch_events_total{outcome="rescheduled"}. Before, it was
// also counted in sluice_jobs_webhook_retries_scheduled_total, so a sum
// of the two (every webhook retry) counted it twice.
func TestBatchEventRetryCountedOnce(t *testing.T) {
	clk := newClock()
	r := newEventReceiver(t, http.StatusServiceUnavailable, clk.Now)
	s, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL, r.URL)
		o.Now, o.WebhookSweepInterval, o.WebhookTimeout = clk.Now, 20*time.Millisecond, time.Second
	})
	b, err := s.CreateBatch(context.Background(), batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	eventually(t, "the round to fail", func() bool { return s.hooks.events[eventRescheduled].Load() == 1 })
	if n := s.hooks.retries.Load(); n != 0 {
		t.Fatalf("sluice_jobs_webhook_retries_scheduled_total %d for a batch event's retry already counted rescheduled, want 0", n)
	}
}
