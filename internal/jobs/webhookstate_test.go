package jobs

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// webhookOf reads the job's "webhook" object as GET /v1/jobs/{id} shows
// it (the handler writes the Job's JSON).
func webhookOf(t *testing.T, s *Store, id string) map[string]any {
	t.Helper()
	j, err := s.Job(context.Background(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Webhook map[string]any `json:"webhook"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.Webhook
}

func waitWebhook(t *testing.T, s *Store, id, status string) map[string]any {
	t.Helper()
	var w map[string]any
	eventually(t, "webhook "+status, func() bool {
		w = webhookOf(t, s, id)
		return w != nil && w["status"] == status
	})
	return w
}

// A job's webhook outcome is on its record: pending at submit, then
// delivered (when, after how many attempts), failed (the receiver's
// status or a short reason, never an error's text) or refused at dial.
func TestWebhookOutcomeRecorded(t *testing.T) {
	ok := newHookTarget(t, nil)
	refuses := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) })
	clk := newClock()
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks, o.Now = []byte("s3cret"), true, clk.Now
	})
	sub := submitHooked(t, s, ok.URL+"/hook")
	if w := webhookOf(t, s, sub.ID); w == nil || w["status"] != "pending" {
		t.Fatalf("before the job ran: webhook %v, want pending", w)
	}
	if plain, _, err := s.Submit(context.Background(), spec("acme")); err != nil {
		t.Fatal(err)
	} else if w := webhookOf(t, s, plain.ID); w != nil {
		t.Fatalf("a job without a webhook shows %v", w)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	w := waitWebhook(t, s, sub.ID, "delivered")
	if w["attempts"] != 1.0 || w["delivered_at"] != float64(clk.Now().Unix()) {
		t.Fatalf("delivered: %v", w)
	}
	if b := <-ok.body; strings.Contains(string(b), `"webhook"`) {
		t.Fatalf("the webhook's body carries its own outcome: %s", b)
	}

	failed := submitHooked(t, s, refuses.URL+"/hook")
	w = waitWebhook(t, s, failed.ID, "failed")
	if w["attempts"] != 1.0 || w["status_code"] != 410.0 || w["reason"] != "receiver_error" || w["failed_at"] == nil {
		t.Fatalf("failed: %v", w)
	}
}

// Refused where it is dialled (loopback by default): failed with
// destination_refused, and no address or error text on the job.
func TestWebhookRefusedAtDialRecorded(t *testing.T) {
	target := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret = []byte("s3cret") })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s, target.URL+"/hook")
	w := waitWebhook(t, s, j.ID, "failed")
	if w["reason"] != "destination_refused" || w["attempts"] != 1.0 {
		t.Fatalf("refused at dial: %v", w)
	}
	b, _ := json.Marshal(w)
	if strings.Contains(string(b), "127.0.0.1") {
		t.Fatalf("the outcome names the address: %s", b)
	}
}

// Past the per-destination bound a webhook is not queued, and not given
// up either: it stays pending, and once the receiver answers again the
// sweep sends it, waiting for room. Before, it was recorded dropped
// (destination_full) and never sent: a burst of jobs finishing together
// to one slow receiver lost every webhook past 64.
func TestWebhookPastTheQueueBoundSentLater(t *testing.T) {
	release := make(chan struct{})
	hung := newHookCounts(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before hung.Close (cleanups run last first)
	srv := startServer(t, t.TempDir())
	c := newClock()
	// Sweeps run on a real timer: at the default 10 s, the two waited for
	// below took the whole of eventually's 20 s bound (a CI failure).
	s := openStore(t, hookedOptions(srv.ClientURL(), func(o *Options) {
		o.Now, o.WebhookSweepInterval = c.Now, 200*time.Millisecond
	}))
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	// One in flight, webhookPerHost waiting, the rest past the bound.
	var ids []string
	for range webhookPerHost + 3 {
		ids = append(ids, submitHooked(t, s, hung.URL+"/hook").ID)
	}
	eventually(t, "webhooks past the bound", func() bool {
		return s.hooks.dropped[dropDestinationFull].Load() >= 1 && calls.Load() == int64(len(ids))
	})
	for _, id := range ids {
		if w := webhookOf(t, s, id); w["status"] != WebhookPending {
			t.Fatalf("while the receiver hangs: %v, want every webhook pending", w)
		}
	}
	open()
	c.Advance(DefaultWebhookLease + time.Second) // the sweep takes those no queue holds
	for _, id := range ids {
		waitWebhook(t, s, id, WebhookDelivered)
	}
	waitSweeps(t, s, 2)
	for _, id := range ids {
		if n := hung.count(id); n != 1 {
			t.Fatalf("%s delivered %d times, want 1", id, n)
		}
	}
	if n := s.Stats().WebhooksFailed; n != 0 {
		t.Fatalf("failed %d, want 0", n)
	}
}
