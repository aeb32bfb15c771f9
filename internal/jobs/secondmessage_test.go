package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestSecondMessageKeepsRetryBackoff: a job has two messages in the work
// stream, as a submit stalled republishAfter or more before its record
// leaves it (or an Idempotency-Key takeover, enqueueAgain) while the
// first is still there. Its first attempt fails and is requeued: the
// message that ran it is held back for the retry delay. The other
// message, delivered in the meantime, found the record queued and ran
// the job again at once: two messages outlive each other's retries, so
// every backoff (and a gateway's Retry-After) was cut short and the
// attempts spent in a burst. Now a requeued record names the message
// that holds its retry, and another message is skipped as a duplicate.
func TestSecondMessageKeepsRetryBackoff(t *testing.T) {
	s, _ := newStore(t, func(o *Options) {
		o.RetryDelay, o.MaxRetryDelay = 10*time.Minute, 10*time.Minute // the held message stays away
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		return Result{}, errors.New("the backend failed")
	})})
	j, _, err := s.Submit(ctx, spec("acme"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first attempt to be requeued", func() bool {
		r := mustJob(t, s, "acme", j.ID)
		return r.Status == StatusQueued && r.Attempts == 1
	})
	// The second message, as the late submit's republish sends it.
	var ack *jetstream.PubAck
	if err := s.enqueueAgain(ctx, j.Class, singleKey(j.ID), &ack); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second message to be handled", func() bool {
		return s.Stats().Duplicates >= 1 || calls.Load() >= 2
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("the job ran %d times within its 10 min retry delay, want once: its second message ran it at once", n)
	}
	if r := mustJob(t, s, "acme", j.ID); r.Status != StatusQueued || r.Attempts != 1 {
		t.Fatalf("job %s is %s after %d attempts, want queued after 1", j.ID, r.Status, r.Attempts)
	}
}
