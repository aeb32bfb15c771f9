package jobs

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// acceptedEvents is how many deliveries r verified, by batch id.
func acceptedEvents(r *eventReceiver) map[string]int {
	evs, _, _ := r.got()
	m := map[string]int{}
	for _, ev := range evs {
		m[ev.Data.ID]++
	}
	return m
}

// An endpoint down for the whole first round used to lose the event
// (counted failed, nothing kept). Now the round leaves it pending on its
// record with the job webhooks' schedule: nothing is sent before its
// next attempt (1 min after the batch ended, plus jitter), and the first
// sweep after that delivers it, with the same webhook-id.
func TestBatchEventRetriedOnScheduleAfterReceiverDown(t *testing.T) {
	clk := newClock()
	r := newEventReceiver(t, http.StatusServiceUnavailable, clk.Now)
	s, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL, r.URL)
		o.Now, o.WebhookSweepInterval, o.WebhookTimeout = clk.Now, 20*time.Millisecond, time.Second
	})
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 2))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	eventually(t, "the first round to end", func() bool { return s.hooks.events[eventRescheduled].Load() == 1 })
	first := r.hits.Load()
	waitSweeps(t, s, 3)
	if n := r.hits.Load(); n != first {
		t.Fatalf("%d deliveries before the next attempt is due, want %d", n, first)
	}
	r.status.Store(http.StatusOK)
	clk.Advance(time.Minute + 13*time.Second) // past 1 min and its jitter (a fifth)
	eventually(t, "the retry delivered", func() bool { return s.hooks.events[eventDelivered].Load() == 1 })
	waitSweeps(t, s, 3)
	_, ids, bad := r.got()
	if len(bad) > 0 || r.hits.Load() != first+1 || ids[0] != ids[len(ids)-1] {
		t.Fatalf("%d deliveries (want %d: the round's and one retry), webhook-ids %v, unverified %v", r.hits.Load(), first+1, ids, bad)
	}
	if f := s.hooks.events[eventFailed].Load(); f != 0 {
		t.Fatalf("%d events failed", f)
	}
}

// A gateway killed after a batch's terminal write and before its event
// was recorded leaves the batch terminal, still in the active index.
// Before, the next tracker only took it out of the index: the event was
// never sent. Now it records and sends the event first.
func TestBatchEndedByKilledTrackerAnnouncedByNext(t *testing.T) {
	clk := newClock()
	r := newEventReceiver(t, http.StatusOK, clk.Now)
	srv := startServer(t, t.TempDir())
	o := eventOptions(srv.ClientURL(), r.URL)
	o.Now = clk.Now
	s := openStore(t, o)
	ctx := context.Background()
	id := "batch_00000000000fdeadbeef"
	key := batchKey("acme", id)
	at := clk.Now().Unix()
	rec, _ := json.Marshal(&batchRecord{Tenant: "acme", Batch: Batch{ID: id, Object: "batch", Status: batchCompleted,
		CreatedAt: at - 60, CompletedAt: &at, RequestCounts: BatchCounts{Total: 1, Completed: 1}}})
	if _, err := s.batch.Create(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.batch.Put(ctx, activeKey(id), []byte(key)); err != nil {
		t.Fatal(err)
	}
	s.nudgeTracker()
	eventually(t, "the batch out of the active index", func() bool {
		ids, err := s.activeIndex(ctx)
		return err == nil && len(ids) == 0
	})
	eventually(t, "its event delivered", func() bool { return acceptedEvents(r)[id] == 1 })
	evs, _, _ := r.got()
	if evs[0].Type != "batch.completed" || evs[0].CreatedAt != at {
		t.Fatalf("event %+v", evs[0])
	}
}

// An event in flight when its process stops used to be lost (counted
// dropped). Now it stays pending on its record, and the next process's
// sweep resends it, once.
func TestBatchEventInFlightAtStopResentByNextProcess(t *testing.T) {
	r := newEventReceiver(t, http.StatusOK, time.Now)
	r.hang.Store(true)
	srv := startServer(t, t.TempDir())
	o := eventOptions(srv.ClientURL(), r.URL)
	o.WebhookSweepInterval = 20 * time.Millisecond
	ctx := context.Background()
	s1, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s1.CreateBatch(ctx, batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	stop := startWorker(t, s1, WorkerOptions{Executor: okExec(&calls)})
	waitBatch(t, s1, "acme", b.ID, batchCompleted)
	eventually(t, "the event at the receiver", func() bool { return r.hits.Load() == 1 })
	stop()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	r.hang.Store(false)
	s2 := openStore(t, o)
	eventually(t, "the event resent", func() bool { return s2.hooks.events[eventDelivered].Load() == 1 })
	waitSweeps(t, s2, 3)
	if n, got := r.hits.Load(), acceptedEvents(r)[b.ID]; n != 2 || got != 2 {
		t.Fatalf("%d deliveries, %d of the batch's event; want 2 (the cut one, the resend)", n, got)
	}
	if n := s2.hooks.resent.Load(); n != 1 {
		t.Fatalf("resent %d, want 1", n)
	}
}

// An endpoint that names tenants gets only their batches' events; one
// that names none gets every tenant's. Before, every endpoint got every
// tenant's, so one tenant's receiver learnt another's batch ids.
func TestBatchEventsOnlyToTheirTenantsEndpoints(t *testing.T) {
	ra, rg, rall := newEventReceiver(t, http.StatusOK, time.Now), newEventReceiver(t, http.StatusOK, time.Now),
		newEventReceiver(t, http.StatusOK, time.Now)
	s, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL)
		o.BatchWebhooks = []BatchEndpoint{{URL: ra.URL, Tenants: []string{"acme"}},
			{URL: rg.URL, Tenants: []string{"globex"}}, {URL: rall.URL}}
	})
	ctx := context.Background()
	ab, err := s.CreateBatch(ctx, batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	gb, err := s.CreateBatch(ctx, batchSpec("globex", 1))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	waitBatch(t, s, "acme", ab.ID, batchCompleted)
	waitBatch(t, s, "globex", gb.ID, batchCompleted)
	eventually(t, "every event delivered", func() bool { return s.hooks.events[eventDelivered].Load() == 4 })
	if err := s.Close(); err != nil { // every delivery goroutine ended
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		r    *eventReceiver
		want map[string]int
	}{{"acme's", ra, map[string]int{ab.ID: 1}}, {"globex's", rg, map[string]int{gb.ID: 1}},
		{"every tenant's", rall, map[string]int{ab.ID: 1, gb.ID: 1}}} {
		got := acceptedEvents(c.r)
		if len(got) != len(c.want) || c.r.hits.Load() != int64(len(c.want)) {
			t.Fatalf("%s endpoint got %v (%d deliveries), want %v", c.name, got, c.r.hits.Load(), c.want)
		}
		for id, n := range c.want {
			if got[id] != n {
				t.Fatalf("%s endpoint got %v, want %v", c.name, got, c.want)
			}
		}
	}
}
