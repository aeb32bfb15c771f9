package jobs

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// toOldRecord rewrites id's record as a binary from before 2026-12-06
// wrote it (the record of 08fb7e1: no "webhook" object on the job, no
// hook owner) and drops its webhook index key, which such a binary
// never wrote: the job a gateway of that version submitted during a
// rolling upgrade, found by a worker of this one.
func toOldRecord(t *testing.T, s *Store, id string) {
	t.Helper()
	ctx := context.Background()
	e, err := s.jobs.Get(ctx, singleKey(id))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	var job map[string]json.RawMessage
	if err := json.Unmarshal(rec["job"], &job); err != nil {
		t.Fatal(err)
	}
	delete(job, "webhook")
	delete(rec, "hook_owner")
	if rec["job"], err = json.Marshal(job); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.jobs.Update(ctx, singleKey(id), b, e.Revision()); err != nil {
		t.Fatal(err)
	}
	s.unindexWebhook(ctx, id)
	if w := webhookOf(t, s, id); w != nil {
		t.Fatalf("the old-format record still shows a webhook: %v", w)
	}
}

// A webhook job submitted by an older gateway (its record without a
// webhook outcome) and run by a worker of this version during a rolling
// upgrade gets what a job submitted now gets: its outcome recorded, and
// after a failed first round, the retry schedule (pending with
// next_attempt_at, indexed for the sweep). It was sent once and forgotten:
// no outcome, no retry, no resend after a stop.
func TestOldRecordWebhookAdoptedByNewWorker(t *testing.T) {
	ok := newHookTarget(t, nil)
	down := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true
		o.WebhookTimeout = time.Second // the first round against down ends within it
	})
	delivered := submitHooked(t, s, ok.URL+"/hook")
	retried := submitHooked(t, s, down.URL+"/hook")
	toOldRecord(t, s, delivered.ID)
	toOldRecord(t, s, retried.ID)

	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	if w := waitWebhook(t, s, delivered.ID, "delivered"); w["attempts"] != 1.0 {
		t.Fatalf("delivered: %v", w)
	}
	var w map[string]any
	eventually(t, "the failed round's retry scheduled", func() bool {
		w = webhookOf(t, s, retried.ID)
		return w != nil && w["status"] == "pending" && w["next_attempt_at"] != nil
	})
	if _, err := s.jobs.Get(context.Background(), webhookIndexKey(retried.ID)); err != nil {
		t.Fatalf("the pending webhook is not indexed for the sweep: %v", err)
	}
	if n := ok.hits.Load(); n != 1 {
		t.Fatalf("receiver got %d deliveries, want 1", n)
	}
}

// A record an older binary finished is left as it is: whether its
// webhook was delivered is unknown, and a later write to it (a repeated
// cancel) must not make it pending, which would resend it.
func TestOldFinishedRecordNotAdopted(t *testing.T) {
	ok := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true
	})
	j := submitHooked(t, s, ok.URL+"/hook")
	if _, err := s.CancelJob(context.Background(), "acme", j.ID); err != nil {
		t.Fatal(err)
	}
	waitWebhook(t, s, j.ID, "delivered")
	toOldRecord(t, s, j.ID)
	if _, _, err := s.transition(context.Background(), singleKey(j.ID), func(r *jobRecord) error {
		r.LastError = "touched"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if w := webhookOf(t, s, j.ID); w != nil {
		t.Fatalf("an old finished record became %v", w)
	}
}
