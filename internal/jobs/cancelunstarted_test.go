package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A batch cancelled while validating (its id is in the listing from its
// first write) whose creator stopped before writing every line's record
// (the gateway killed mid-enqueue, or NATS gone under failCreate) stayed
// cancelling for good: the lines without a record are never terminal, the
// tracker failed only batches still validating after CreateTimeout, and
// only in_progress ones expire. It held an active-batch slot forever and
// its client's poll never ended. Now it is failed after CreateTimeout as a
// batch left validating is; the record there was is cancelled. The
// records are written here as a creator killed after the first of three
// would have left them.
func TestBatchCancelledWhileValidatingByADeadCreatorEnds(t *testing.T) {
	clk := newClock()
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.Now = clk.Now
	s := openStore(t, o)
	ctx := context.Background()
	id := "batch_00000000000fdeadcafe"
	key := batchKey("acme", id)
	rec, _ := json.Marshal(&batchRecord{Tenant: "acme", Batch: Batch{ID: id, Object: "batch", Status: batchValidating,
		Endpoint: "/v1/chat/completions", CompletionWindow: "24h", CreatedAt: clk.Now().Unix(),
		ExpiresAt: ptr(clk.Now().Add(24 * time.Hour).Unix()), RequestCounts: BatchCounts{Total: 3}}})
	if _, err := s.batch.Create(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.batch.Put(ctx, activeKey(id), []byte(key)); err != nil {
		t.Fatal(err)
	}
	jkey := batchJobKey(id, 0)
	jr, _ := json.Marshal(&jobRecord{Tenant: "acme", Index: 0, Job: Job{ID: "job_0000000000000001", Object: "job",
		Status: StatusQueued, Path: "/v1/chat/completions", Model: "m1", Class: "batch", BatchID: id,
		CustomID: "req-0", CreatedAt: clk.Now().Unix()}})
	if _, err := s.jobs.Create(ctx, jkey, jr); err != nil {
		t.Fatal(err)
	}
	if b, err := s.CancelBatch(ctx, "acme", id); err != nil || b.Status != batchCancelling {
		t.Fatalf("cancel = %+v, %v; want cancelling", b, err)
	}
	s.nudgeTracker()
	// The tracker cancels the record there is: it has evaluated the batch.
	eventually(t, "the queued line cancelled", func() bool {
		r, _, err := s.getJob(ctx, jkey)
		return err == nil && r.Job.Status == StatusCancelled
	})
	if b, err := s.Batch(ctx, "acme", id); err != nil || b.Status != batchCancelling {
		t.Fatalf("before CreateTimeout: %+v, %v; want cancelling", b, err)
	}
	clk.Advance(s.o.CreateTimeout + time.Second)
	s.nudgeTracker()
	b := waitBatch(t, s, "acme", id, batchFailed)
	if b.FailedAt == nil || b.Errors == nil || len(b.Errors.Data) != 1 || b.Errors.Data[0].Code != "internal_error" {
		t.Fatalf("failed batch = %+v", b)
	}
	eventually(t, "the batch out of the active index", func() bool {
		_, err := s.batch.Get(ctx, activeKey(id))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// A batch cancelled while validating whose creator wrote every record
// (and so never made it in_progress) still ends cancelled, its lines in
// the error file, at once: the new rule leaves it alone.
func TestBatchCancelledWhileValidatingWithEveryRecordEndsCancelled(t *testing.T) {
	clk := newClock()
	srv := startServer(t, t.TempDir())
	o := testOptions(srv.ClientURL())
	o.Now = clk.Now
	s := openStore(t, o)
	ctx := context.Background()
	id := "batch_00000000000fdeadf00d"
	key := batchKey("acme", id)
	rec, _ := json.Marshal(&batchRecord{Tenant: "acme", Batch: Batch{ID: id, Object: "batch", Status: batchValidating,
		Endpoint: "/v1/chat/completions", CompletionWindow: "24h", CreatedAt: clk.Now().Unix(),
		ExpiresAt: ptr(clk.Now().Add(24 * time.Hour).Unix()), RequestCounts: BatchCounts{Total: 2}}})
	if _, err := s.batch.Create(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.batch.Put(ctx, activeKey(id), []byte(key)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		jr, _ := json.Marshal(&jobRecord{Tenant: "acme", Index: i, Job: Job{ID: "job_000000000000000" + string(rune('1'+i)),
			Object: "job", Status: StatusQueued, Path: "/v1/chat/completions", Model: "m1", Class: "batch", BatchID: id,
			CustomID: "req", CreatedAt: clk.Now().Unix()}})
		if _, err := s.jobs.Create(ctx, batchJobKey(id, i), jr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CancelBatch(ctx, "acme", id); err != nil {
		t.Fatal(err)
	}
	s.nudgeTracker()
	b := waitBatch(t, s, "acme", id, batchCancelled)
	if b.RequestCounts != (BatchCounts{Total: 2, Failed: 2}) || b.ErrorFileID == nil {
		t.Fatalf("cancelled batch = %+v", b)
	}
}
