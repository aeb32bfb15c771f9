package jobs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testEventSecret is a Standard Webhooks secret, as OpenAI's dashboard
// gives them: whsec_ and the base64 of the key.
var testEventSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("batch-event-key-0123456789abcdef"))

// openAIEvent is the webhook event the OpenAI SDKs unwrap.
type openAIEvent struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	Type      string `json:"type"`
	Data      struct {
		ID string `json:"id"`
	} `json:"data"`
}

// unwrapEvent checks a delivery as openai-node's webhooks.unwrap does
// (lib/webhook-signature.ts): the three Standard Webhooks headers, a
// timestamp within 300 s of now either way, a whsec_ secret's base64
// decoded as the key, and one of the space-separated "v1,<base64>"
// signatures equal to HMAC-SHA256(key, id.timestamp.body). Written here
// from the SDK, not with Sign*, so a change on either side shows.
func unwrapEvent(h http.Header, body []byte, secret string, now time.Time) (*openAIEvent, error) {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return nil, errors.New("missing a webhook-* header")
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, errors.New("invalid webhook timestamp")
	}
	if d := now.Unix() - t; d > 300 || d < -300 {
		return nil, errors.New("webhook timestamp out of tolerance")
	}
	key := []byte(secret)
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return nil, err
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		got, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "v1,"))
		if err == nil && hmac.Equal(got, want) {
			var ev openAIEvent
			if err := json.Unmarshal(body, &ev); err != nil {
				return nil, err
			}
			return &ev, nil
		}
	}
	return nil, errors.New("signature does not match")
}

// eventReceiver is an endpoint that records every delivery it verifies
// and answers status.
type eventReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []*openAIEvent
	ids    []string
	bad    []error
	hits   atomic.Int64
	// status is the answer; hang (while set) answers nothing until the
	// request ends (its sender gives up or closes).
	status atomic.Int64
	hang   atomic.Bool
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter atomic.Int64
}

func newEventReceiver(t *testing.T, status int, now func() time.Time) *eventReceiver {
	r := &eventReceiver{}
	r.status.Store(int64(status))
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ev, err := unwrapEvent(req.Header, body, testEventSecret, now())
		r.mu.Lock()
		if err != nil {
			r.bad = append(r.bad, err)
		} else {
			r.events = append(r.events, ev)
			r.ids = append(r.ids, req.Header.Get("webhook-id"))
		}
		r.mu.Unlock()
		r.hits.Add(1)
		if r.hang.Load() {
			<-req.Context().Done()
			return
		}
		if ra := r.retryAfter.Load(); ra > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(ra, 10))
		}
		w.WriteHeader(int(r.status.Load()))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *eventReceiver) got() ([]*openAIEvent, []string, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*openAIEvent(nil), r.events...), append([]string(nil), r.ids...), append([]error(nil), r.bad...)
}

func eventOptions(url string, endpoints ...string) Options {
	o := testOptions(url)
	o.WebhookSecret = []byte(testEventSecret)
	o.AllowPrivateWebhooks = true // the receivers are on loopback
	for _, u := range endpoints {
		o.BatchWebhooks = append(o.BatchWebhooks, BatchEndpoint{URL: u})
	}
	return o
}

// A batch finished by two trackers racing sends batch.completed once to
// each configured endpoint, in OpenAI's envelope, verifiable as the SDK
// verifies it.
func TestBatchCompletedEventSentOncePerEndpoint(t *testing.T) {
	r1, r2 := newEventReceiver(t, http.StatusOK, time.Now), newEventReceiver(t, http.StatusNoContent, time.Now)
	srv := startServer(t, t.TempDir())
	wo := eventOptions(srv.ClientURL(), r1.URL, r2.URL)
	wo.NoTracker = true
	workerOnly := openStore(t, wo)
	ctx := context.Background()
	b, err := workerOnly.CreateBatch(ctx, batchSpec("acme", 10))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, workerOnly, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	eventually(t, "all jobs to run", func() bool { return calls.Load() == 10 })
	t1, err := Open(ctx, eventOptions(srv.ClientURL(), r1.URL, r2.URL))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := Open(ctx, eventOptions(srv.ClientURL(), r1.URL, r2.URL))
	if err != nil {
		t.Fatal(err)
	}
	done := waitBatch(t, t1, "acme", b.ID, batchCompleted)
	eventually(t, "an event delivered to each endpoint", func() bool {
		return t1.hooks.events[eventDelivered].Load()+t2.hooks.events[eventDelivered].Load() >= 2
	})
	waitBatch(t, t2, "acme", b.ID, batchCompleted)
	// Closing waits for every delivery goroutine: a second event, had
	// either tracker queued one, is delivered or counted by then.
	for _, s := range []*Store{t1, t2} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*eventReceiver{r1, r2} {
		evs, ids, bad := r.got()
		if len(bad) > 0 || len(evs) != 1 {
			t.Fatalf("endpoint got %d verified events and %v; want exactly one verified", len(evs), bad)
		}
		ev := evs[0]
		if ev.Object != "event" || ev.Type != "batch.completed" || ev.Data.ID != b.ID || ev.CreatedAt != *done.CompletedAt ||
			!strings.HasPrefix(ev.ID, "evt_") || ids[0] != ev.ID {
			t.Fatalf("event = %+v (webhook-id %s), batch %s completed at %d", ev, ids[0], b.ID, *done.CompletedAt)
		}
	}
	var delivered, other uint64
	for _, s := range []*Store{t1, t2, workerOnly} {
		delivered += s.hooks.events[eventDelivered].Load()
		other += s.hooks.events[eventFailed].Load() + s.hooks.events[eventRescheduled].Load() + s.hooks.events[eventDeferred].Load()
	}
	if delivered != 2 || other != 0 {
		t.Fatalf("batch events delivered %d, failed or dropped %d; want 2 and 0", delivered, other)
	}
}

// Each terminal status is its own event type: a cancelled batch sends
// batch.cancelled, an expired one batch.expired, a failed one
// batch.failed.
func TestBatchCancelledAndExpiredEvents(t *testing.T) {
	clk := newClock()
	r := newEventReceiver(t, http.StatusOK, clk.Now) // the store's clock: its timestamps are in 2023
	srv := startServer(t, t.TempDir())
	o := eventOptions(srv.ClientURL(), r.URL)
	o.Now = clk.Now
	s := openStore(t, o)
	ctx := context.Background()
	cb, err := s.CreateBatch(ctx, batchSpec("acme", 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelBatch(ctx, "acme", cb.ID); err != nil {
		t.Fatal(err)
	}
	cancelled := waitBatch(t, s, "acme", cb.ID, batchCancelled)
	eventually(t, "the cancelled event", func() bool { return r.hits.Load() == 1 })
	sp := batchSpec("acme", 3)
	sp.CompletionWindow = "1h"
	eb, err := s.CreateBatch(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	expired := waitBatch(t, s, "acme", eb.ID, batchExpired)
	eventually(t, "the expired event", func() bool { return r.hits.Load() == 2 })
	// A batch its creator left validating (killed mid-creation) is failed
	// by the tracker after CreateTimeout: batch.failed.
	fid := "batch_00000000000fdeadbeef"
	fkey := batchKey("acme", fid)
	rec, _ := json.Marshal(&batchRecord{Tenant: "acme", Batch: Batch{ID: fid, Object: "batch", Status: batchValidating,
		CreatedAt: clk.Now().Unix(), RequestCounts: BatchCounts{Total: 1}}})
	if _, err := s.batch.Create(ctx, fkey, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.batch.Put(ctx, activeKey(fid), []byte(fkey)); err != nil {
		t.Fatal(err)
	}
	s.nudgeTracker()
	clk.Advance(s.o.CreateTimeout + time.Second)
	failed := waitBatch(t, s, "acme", fid, batchFailed)
	eventually(t, "the failed event", func() bool { return r.hits.Load() == 3 })
	evs, ids, bad := r.got()
	if len(bad) > 0 || len(evs) != 3 {
		t.Fatalf("%d verified events, unverifiable: %v", len(evs), bad)
	}
	want := []struct {
		typ, batch string
		at         int64
	}{{"batch.cancelled", cb.ID, *cancelled.CancelledAt}, {"batch.expired", eb.ID, *expired.ExpiredAt},
		{"batch.failed", fid, *failed.FailedAt}}
	for i, w := range want {
		if ev := evs[i]; ev.Type != w.typ || ev.Data.ID != w.batch || ev.CreatedAt != w.at || ids[i] != batchEventID(w.batch, w.typ) {
			t.Fatalf("event %d = %+v, webhook-id %s; want %s of %s at %d", i, ev, ids[i], w.typ, w.batch, w.at)
		}
	}
}

// An endpoint's final answer (a 4xx other than 408/429) ends the event's
// delivery after one attempt, counted failed; other endpoints still get
// theirs.
func TestBatchEventPermanentRefusal(t *testing.T) {
	refuses, takes := newEventReceiver(t, http.StatusBadRequest, time.Now), newEventReceiver(t, http.StatusOK, time.Now)
	s, _ := newStore(t, func(o *Options) { *o = eventOptions(o.URL, refuses.URL, takes.URL) })
	ctx := context.Background()
	b, err := s.CreateBatch(ctx, batchSpec("acme", 2))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 2, Executor: okExec(&calls)})
	waitBatch(t, s, "acme", b.ID, batchCompleted)
	eventually(t, "both outcomes", func() bool {
		return s.hooks.events[eventFailed].Load() == 1 && s.hooks.events[eventDelivered].Load() == 1
	})
	if refuses.hits.Load() != 1 || takes.hits.Load() != 1 {
		t.Fatalf("attempts: %d at the refusing endpoint, %d at the other; want 1 and 1", refuses.hits.Load(), takes.hits.Load())
	}
}
