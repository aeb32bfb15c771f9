package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// An endpoint a gateway's reload removed is not tried again for the
// events pending for it: the next sender (here a worker process still
// started with the old --batch-webhooks, which records nothing) drops
// them, counted withdrawn, while the endpoint still listed gets its
// retry (at least once). Before, both were retried on the schedule, the
// removed one up to ~28 h after its batch ended.
func TestRemovedEndpointsPendingEventsDropped(t *testing.T) {
	clk := newClock()
	// Both ask for 10 minutes: the first round ends after one attempt,
	// the retry is due on the injected clock only.
	removed := newEventReceiver(t, http.StatusServiceUnavailable, clk.Now)
	removed.retryAfter.Store(600)
	kept := newEventReceiver(t, http.StatusServiceUnavailable, clk.Now)
	kept.retryAfter.Store(600)
	opts := func(url string) Options {
		o := eventOptions(url, removed.URL, kept.URL)
		o.Now, o.WebhookSweepInterval, o.WebhookTimeout = clk.Now, 20*time.Millisecond, time.Minute
		return o
	}
	gw, srv := newStore(t, func(o *Options) {
		*o = opts(o.URL)
		o.RecordBatchWebhooks = true
	})
	ctx := context.Background()
	var calls atomic.Int64
	startWorker(t, gw, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	b, err := gw.CreateBatch(ctx, batchSpec("acme", 1))
	if err != nil {
		t.Fatal(err)
	}
	waitBatch(t, gw, "acme", b.ID, batchCompleted)
	eventually(t, "both first rounds to fail", func() bool { return gw.hooks.events[eventRescheduled].Load() == 2 })

	clk.Advance(2 * time.Second) // the reload comes after the batch's end
	if err := gw.SetBatchWebhooks([]BatchEndpoint{{URL: kept.URL}}); err != nil {
		t.Fatal(err)
	}
	l := mustRecordedHooks(t, gw)
	if _, ok := l.Removed[removed.URL]; l.Gen != 2 || !slices.Equal(l.URLs, []string{kept.URL}) || !ok || len(l.Removed) != 1 {
		t.Fatalf("recorded %+v, want generation 2 (start, reload), only the kept URL, the other removed", l)
	}

	// A worker process started with both endpoints joins; the gateway
	// stops sweeping (its sweeps would drop it the same way).
	wk := openStore(t, opts(srv.ClientURL()))
	removed.status.Store(http.StatusOK)
	kept.status.Store(http.StatusOK)
	clk.Advance(43 * time.Minute) // the retries: the step past 10 min, 36 min + its jitter
	withdrawn := func() uint64 { return gw.hooks.events[eventWithdrawn].Load() + wk.hooks.events[eventWithdrawn].Load() }
	delivered := func() uint64 { return gw.hooks.events[eventDelivered].Load() + wk.hooks.events[eventDelivered].Load() }
	eventually(t, "both retries to end", func() bool { return delivered()+withdrawn() == 2 })
	waitSweeps(t, wk, 3)
	if d, w := delivered(), withdrawn(); d != 1 || w != 1 {
		t.Fatalf("delivered %d, withdrawn %d; want the kept endpoint's retry delivered, the removed one's dropped", d, w)
	}
	if r, k := acceptedEvents(removed)[b.ID], acceptedEvents(kept)[b.ID]; r != 1 || k != 2 {
		t.Fatalf("posts: removed endpoint %d, kept %d; want 1 (its first round) and 2 (its first round and the retry)", r, k)
	}

	// Not dropped: an endpoint only workers list (never the gateways'),
	// and a batch of the removed endpoint ending after its removal (sent
	// by a process whose file still lists it, during a rolling change).
	for _, j := range []*Job{{Webhook: "https://worker-only.example/hook"}, {Webhook: removed.URL, FinishedAt: clk.Now().Unix()}} {
		if _, drop := wk.withdrawnEndpoint(ctx, j); drop {
			t.Fatalf("%s ended at %d withdrawn", j.Webhook, j.FinishedAt)
		}
	}
}

// The record expires with the bucket (queue.retention after its last
// write), and an unchanged list is not written again: a reload coming
// later recorded its list with nothing removed, so the endpoint it took
// out got its pending events for ~28 h as before the record. The
// reloading gateway's own list before the change stands in for an
// expired record, and a record unchanged for half the retention is
// written again at a start or reload.
func TestRemovalRecordedAfterTheListExpired(t *testing.T) {
	clk := newClock()
	const removed, kept = "https://removed.example/hook", "https://kept.example/hook"
	gw, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL, removed, kept)
		o.Now, o.RecordBatchWebhooks = clk.Now, true
	})
	ctx := context.Background()
	read := func() recordedHooks { return mustRecordedHooks(t, gw) }

	// Half the retention on, the same list set again (a reload that
	// changed something else, a gateway's start): written again.
	started := read()
	clk.Advance(gw.o.Retention/2 + time.Second)
	if err := gw.SetBatchWebhooks(gw.BatchWebhooks()); err != nil {
		t.Fatal(err)
	}
	if l := read(); l.AtMS == started.AtMS || l.Gen != started.Gen {
		t.Fatalf("record after half the retention: at %d gen %d; want written again (was at %d) with generation %d",
			l.AtMS, l.Gen, started.AtMS, started.Gen)
	}

	// The record expires (the bucket's max age; purged here, as the
	// server does), then a reload takes an endpoint out.
	if err := gw.jobs.Purge(ctx, batchHooksKey); err != nil {
		t.Fatal(err)
	}
	finished := clk.Now().Unix()
	clk.Advance(2 * time.Second)
	if err := gw.SetBatchWebhooks([]BatchEndpoint{{URL: kept}}); err != nil {
		t.Fatal(err)
	}
	if l := read(); !slices.Equal(l.URLs, []string{kept}) || l.Removed[removed] == 0 {
		t.Fatalf("recorded %+v after the expired record; want only the kept URL, the other removed", l)
	}
	if _, drop := gw.withdrawnEndpoint(ctx, &Job{Webhook: removed, FinishedAt: finished}); !drop {
		t.Fatal("an event of the removed endpoint, its batch ended before the reload, not withdrawn")
	}
}

// The tracker's hourly sweep keeps the record of a list nobody changes
// from expiring (so a gateway restarted with an endpoint removed finds
// it), and leaves alone a record of another list (the last start or
// reload wrote it) or none.
func TestRecordRefreshedBySweep(t *testing.T) {
	clk := newClock()
	const a, b = "https://a.example/hook", "https://b.example/hook"
	gw, _ := newStore(t, func(o *Options) {
		*o = eventOptions(o.URL, a)
		o.Now, o.RecordBatchWebhooks = clk.Now, true
	})
	ctx := context.Background()
	read := func() (recordedHooks, bool) { return recordedHooksOf(t, gw) }
	started, _ := read()
	clk.Advance(gw.o.Retention/2 + orphanSweepEvery)
	eventually(t, "the sweep to write the record again", func() bool { l, _ := read(); return l.AtMS > started.AtMS })
	if l, _ := read(); l.Gen != started.Gen || !slices.Equal(l.URLs, []string{a}) {
		t.Fatalf("refreshed %+v; want generation %d, the same list", l, started.Gen)
	}

	other := recordedHooks{Gen: 7, URLs: []string{b}, Removed: map[string]int64{a: clk.Now().UnixMilli()}, AtMS: clk.Now().UnixMilli(), By: "other"}
	v, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.jobs.Put(ctx, batchHooksKey, v); err != nil {
		t.Fatal(err)
	}
	clk.Advance(gw.o.Retention)
	if err := gw.refreshBatchWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := read(); l.By != "other" || l.AtMS != other.AtMS {
		t.Fatalf("another list's record rewritten: %+v", l)
	}
	if err := gw.jobs.Purge(ctx, batchHooksKey); err != nil {
		t.Fatal(err)
	}
	if err := gw.refreshBatchWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ok := read(); ok {
		t.Fatalf("no record, refreshed into %+v; want none (a reload or start writes it, with what it removed)", l)
	}
}

// recordedHooksOf reads the gateways' record of the batch webhook list;
// false when there is none.
func recordedHooksOf(t *testing.T, gw *Store) (recordedHooks, bool) {
	t.Helper()
	e, err := gw.jobs.Get(context.Background(), batchHooksKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return recordedHooks{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var l recordedHooks
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		t.Fatal(err)
	}
	return l, true
}

// mustRecordedHooks is recordedHooksOf where the record must be there.
func mustRecordedHooks(t *testing.T, gw *Store) recordedHooks {
	t.Helper()
	l, ok := recordedHooksOf(t, gw)
	if !ok {
		t.Fatalf("no record at %s", batchHooksKey)
	}
	return l
}
