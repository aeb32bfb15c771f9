package jobs

import (
	"context"
	"testing"
)

// Backlog reads what /status shows of the queue: jobs not finished,
// batches in progress and the store's size.
func TestBacklog(t *testing.T) {
	s, _ := newStore(t, func(o *Options) { o.NoTracker = true })
	ctx := context.Background()
	if bl, err := s.Backlog(ctx); err != nil || bl != (Backlog{}) {
		t.Fatalf("empty queue: %+v, %v", bl, err)
	}
	for _, tenant := range []string{"acme", "globex"} {
		if _, _, err := s.Submit(ctx, spec(tenant)); err != nil {
			t.Fatal(err)
		}
	}
	if bl, err := s.Backlog(ctx); err != nil || bl.Jobs != 2 || bl.Batches != 0 || bl.StoreBytes <= 0 {
		t.Fatalf("two jobs queued: %+v, %v", bl, err)
	}
	if _, err := s.CreateBatch(ctx, batchSpec("acme", 3)); err != nil {
		t.Fatal(err)
	}
	if bl, err := s.Backlog(ctx); err != nil || bl.Batches != 1 || bl.Jobs < 2 {
		t.Fatalf("with a batch: %+v, %v", bl, err)
	}
}
