package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// indexSubjects is how many a.<id> subjects the batch bucket's stream
// holds: live entries and delete markers alike (a listing of the index
// is sent both).
func indexSubjects(t *testing.T, s *Store) int {
	t.Helper()
	ctx := context.Background()
	st, err := s.js.Stream(ctx, "KV_"+batchBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV."+batchBucket+"."+activeKey("*")))
	if err != nil {
		t.Fatal(err)
	}
	return len(info.State.Subjects)
}

// waitNoIndexSubjects waits for the a.* subjects to go, failing with how
// many are left.
func waitNoIndexSubjects(t *testing.T, s *Store, finished int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n := indexSubjects(t, s); n != 0; n = indexSubjects(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("%d index subjects left after %d finished batches, want 0", n, finished)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A finished batch leaves nothing in the active-batch index. Its entry
// was deleted, and a KV delete leaves a marker for the bucket's max age
// (queue.retention, a week) that every listing of the index (each
// tracker scan, every second while a batch is active; each /metrics
// scrape) and every new watch of it is sent: 100,000 finished batches
// cost a listing 1.3 s and the embedded server 150 MiB of heap.
//
// And the tracker still learns that each batch left, with no event to
// tell it (a purge sends its watch none) and TrackInterval an hour (no
// periodic scan): the bound of one active batch admits the next one
// once the one before finished.
func TestFinishedBatchesLeaveNoIndexMarkers(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.TrackInterval, o.MaxActiveBatches = time.Hour, 1 })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Concurrency: 4, Executor: okExec(&calls)})
	ctx := context.Background()
	const n = 3
	for i := range n {
		b, err := s.CreateBatch(ctx, batchSpec("acme", 2))
		if err != nil {
			t.Fatalf("batch %d, the one before finished: %v", i+1, err)
		}
		if i == 0 {
			if _, err := s.CreateBatch(ctx, batchSpec("acme", 1)); !errors.Is(err, ErrTooManyBatches) {
				t.Fatalf("a second batch at the bound of 1: %v, want ErrTooManyBatches", err)
			}
		}
		waitBatch(t, s, "acme", b.ID, batchCompleted)
		eventually(t, "no active batch counted", func() bool { active, _ := s.active.counts(); return active == 0 })
	}
	waitNoIndexSubjects(t, s, n)
	keys, err := s.listKeys(ctx, batchBucket, "a.*")
	if err != nil || len(keys) != 0 {
		t.Fatalf("listing after %d finished batches: %v, %v; want none", n, keys, err)
	}
}
