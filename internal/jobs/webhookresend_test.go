package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A webhook in flight when the process stops is still pending on the
// job, and the next process's worker sends it, with the same webhook-id.
// Before, it was never sent.
func TestWebhookPendingAtStopResentAfterRestart(t *testing.T) {
	var answer atomic.Bool // false: hang until the sender gives up
	target := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if !answer.Load() {
			<-r.Context().Done()
		}
	})
	tweak := func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true }
	s1, srv := newStore(t, tweak)
	var calls atomic.Int64
	startWorker(t, s1, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s1, target.URL+"/hook")
	first := <-target.got // in flight at the receiver, which does not answer
	<-target.body
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	o := testOptions(srv.ClientURL())
	tweak(&o)
	s2 := openStore(t, o)
	if w := webhookOf(t, s2, j.ID); w["status"] != "pending" {
		t.Fatalf("after the stop: webhook %v, want still pending", w)
	}
	answer.Store(true)
	startWorker(t, s2, WorkerOptions{Executor: okExec(&calls)})
	w := waitWebhook(t, s2, j.ID, "delivered")
	var again *http.Request
	for again == nil {
		r := <-target.got
		<-target.body
		if r.Header.Get("webhook-id") == j.ID {
			again = r
		}
	}
	if first.Header.Get("webhook-id") != j.ID || w["attempts"] != 1.0 {
		t.Fatalf("first webhook-id %q, job %s; outcome %v", first.Header.Get("webhook-id"), j.ID, w)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the job ran %d times; only its webhook is resent", n)
	}
	if n := s2.hooks.resent.Load(); n != 1 {
		t.Fatalf("resent %d, want 1", n)
	}
}

// More pending webhooks to one receiver than its queue holds are all
// resent (the resend waits for room; it does not drop), once each.
func TestWebhookResendWaitsForRoom(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	target := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	})
	go func() { // newHookTarget's channels hold 16
		for {
			select {
			case <-target.got:
				<-target.body
			case <-t.Context().Done():
				return
			}
		}
	}()
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true
		o.WebhookSweepInterval = 20 * time.Millisecond
	})
	n := webhookPerHost + 20
	ids := make([]string, n)
	for i := range ids {
		j := submitHooked(t, s, target.URL+"/hook")
		ids[i] = j.ID
		// Finished by a process that stopped before sending its webhook.
		if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
			r.Job.Status, r.Job.FinishedAt = StatusSucceeded, s.now().Unix()
			r.HookOwner = "gone-process"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	eventually(t, "every pending webhook delivered", func() bool { return s.Stats().WebhooksSent == uint64(n) })
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("job %s: %d deliveries, want 1 (%d distinct of %d)", id, got[id], len(got), n)
		}
	}
	if d := s.hooks.dropped[dropDestinationFull].Load(); d != 0 {
		t.Fatalf("%d dropped", d)
	}
	for _, id := range ids[:3] {
		if w := webhookOf(t, s, id); w["status"] != "delivered" {
			t.Fatal(fmt.Sprint(id, w))
		}
	}
}

// A delivered webhook leaves nothing under the index's subjects. Its
// key was deleted, which left a marker per webhook for the bucket's max
// age (a week); every sweep's listing was sent all of them every 10 s
// (the soak of 2026-12-06: the gateway's heap after GC grew with the
// jobs run, the sweep's consumer loading every block of the bucket).
func TestDeliveredWebhooksLeaveNoIndexMarkers(t *testing.T) {
	target := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {})
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	const n = 3 // newHookTarget's channels hold 16
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submitHooked(t, s, target.URL+"/hook").ID
	}
	ctx := context.Background()
	for _, id := range ids {
		waitWebhook(t, s, id, "delivered")
		eventually(t, "the index key of "+id+" gone", func() bool {
			_, err := s.jobs.Get(ctx, webhookIndexKey(id))
			return errors.Is(err, jetstream.ErrKeyNotFound)
		})
	}
	st, err := s.js.Stream(ctx, "KV_"+jobsBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV."+jobsBucket+"."+webhookIndexFilter))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 0 {
		t.Fatalf("%d index subjects left after %d delivered webhooks, want 0: %v", len(info.State.Subjects), n, info.State.Subjects)
	}
}
