package jobs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func spec(tenant string) Spec {
	return Spec{Tenant: tenant, Path: "/v1/chat/completions", Model: "m1", Body: []byte(`{"model":"m1"}`)}
}

func TestSubmitJobAndTenantIsolation(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	j, existing, err := s.Submit(ctx, spec("acme"))
	if err != nil || existing {
		t.Fatalf("Submit: %v, existing=%v", err, existing)
	}
	if j.Status != StatusQueued || j.Class != "interactive" || j.Object != "job" || j.Tenant != "acme" {
		t.Fatalf("submitted job = %+v", j)
	}
	got := mustJob(t, s, "acme", j.ID)
	if got.ID != j.ID || got.Model != "m1" || got.Path != "/v1/chat/completions" {
		t.Fatalf("Job = %+v", got)
	}
	if _, err := s.Job(ctx, "other", j.ID); !isNotFound(err) {
		t.Fatalf("another tenant's job: %v, want ErrNotFound", err)
	}
	if _, err := s.Job(ctx, "acme", "job_nope"); !isNotFound(err) {
		t.Fatalf("unknown job: %v", err)
	}
	if _, err := s.CancelJob(ctx, "other", j.ID); !isNotFound(err) {
		t.Fatalf("cancelling another tenant's job: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	sp := spec("acme")
	sp.IdempotencyKey = "k1"
	a, existing, err := s.Submit(ctx, sp)
	if err != nil || existing {
		t.Fatalf("first: %v %v", err, existing)
	}
	b, existing, err := s.Submit(ctx, sp)
	if err != nil || !existing || b.ID != a.ID {
		t.Fatalf("second: id %s (first %s), existing=%v, err %v", b.ID, a.ID, existing, err)
	}
	other := sp
	other.Tenant = "globex"
	c, existing, err := s.Submit(ctx, other)
	if err != nil || existing || c.ID == a.ID {
		t.Fatalf("other tenant, same key: id %s, existing=%v, err %v", c.ID, existing, err)
	}

	// Racing submitters with one key agree on one job.
	sp.IdempotencyKey = "race"
	var wg sync.WaitGroup
	var fresh atomic.Int64
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			j, existing, err := s.Submit(ctx, sp)
			if err != nil {
				t.Error(err)
				return
			}
			if !existing {
				fresh.Add(1)
			}
			ids[i] = j.ID
		})
	}
	wg.Wait()
	if fresh.Load() != 1 {
		t.Errorf("%d submitters created a job, want 1", fresh.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	q, _, _ := s.Submit(ctx, spec("acme"))
	c, err := s.CancelJob(ctx, "acme", q.ID)
	if err != nil || c.Status != StatusCancelled || c.Error == nil || c.FinishedAt == 0 {
		t.Fatalf("cancel queued: %+v, %v", c, err)
	}
	if _, err := s.CancelJob(ctx, "acme", q.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel finished job: %v, want ErrConflict", err)
	}

	started := make(chan string, 1)
	release := make(chan struct{})
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: execFunc(func(ctx context.Context, j *Job) (Result, error) {
		calls.Add(1)
		started <- j.ID
		<-release
		return Result{StatusCode: 200, Body: []byte(`{}`)}, nil
	})})
	r, _, _ := s.Submit(ctx, spec("acme"))
	if id := <-started; id != r.ID {
		t.Fatalf("ran %s, want %s", id, r.ID)
	}
	c, err = s.CancelJob(ctx, "acme", r.ID)
	if err != nil || c.Status != StatusRunning || !c.CancelRequested {
		t.Fatalf("cancel running: %+v, %v", c, err)
	}
	close(release)
	eventually(t, "the running job to end cancelled", func() bool {
		return mustJob(t, s, "acme", r.ID).Status == StatusCancelled
	})
	j := mustJob(t, s, "acme", r.ID)
	if j.Result != nil || j.Error == nil || j.Error.Code != "cancelled" {
		t.Fatalf("cancelled job keeps %+v / %+v", j.Result, j.Error)
	}
	// The worker drops the queued job cancelled first without running it.
	eventually(t, "the cancelled message to be dropped", func() bool { return s.Stats().Duplicates >= 1 })
	if calls.Load() != 1 {
		t.Fatalf("executed %d times, want 1", calls.Load())
	}
}

// TestIdempotencyClaimReleasedOrAbandoned: a submit that finds its key
// claimed by a submit in flight waits for that job; if the claim is
// released instead (that submit was refused), it claims the key itself
// and makes the job (idemWait is an hour: it does not wait it out). A
// claim whose submitter never writes its record (it died) is taken over
// for the id it names once idemWait has passed, and the key then names
// that job.
func TestIdempotencyClaimReleasedOrAbandoned(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp := spec("acme")
	sp.IdempotencyKey = "refused-in-flight"
	ik := idemKey("acme", sp.IdempotencyKey)
	rev, err := s.idem.Create(ctx, ik, []byte("job_inflight"))
	if err != nil {
		t.Fatal(err)
	}
	s.idemWait = time.Hour
	type submitted struct {
		j        *Job
		existing bool
		err      error
	}
	got := make(chan submitted, 1)
	go func() {
		j, existing, err := s.Submit(ctx, sp)
		got <- submitted{j, existing, err}
	}()
	// Released while the duplicate waits on it (or before it read it:
	// either way the duplicate must end up claiming the key).
	s.releaseClaim(idemClaim{key: ik, id: "job_inflight", rev: rev})
	r := <-got
	if r.err != nil || r.existing || r.j.ID == "job_inflight" {
		t.Fatalf("duplicate of a released claim: %+v existing=%v %v; want a new job of its own", r.j, r.existing, r.err)
	}
	if e, err := s.idem.Get(ctx, ik); err != nil || string(e.Value()) != r.j.ID {
		t.Fatalf("the key's claim after: %v %v; want %s", e, err, r.j.ID)
	}

	sp.IdempotencyKey = "abandoned"
	ik = idemKey("acme", sp.IdempotencyKey)
	if _, err := s.idem.Create(ctx, ik, []byte("job_dead")); err != nil {
		t.Fatal(err)
	}
	s.idemWait = 20 * time.Millisecond
	j, existing, err := s.Submit(ctx, sp)
	if err != nil || existing || j.ID != "job_dead" {
		t.Fatalf("a dead submitter's claim: %+v existing=%v %v; want job_dead created", j, existing, err)
	}
	if again, existing, err := s.Submit(ctx, sp); err != nil || !existing || again.ID != "job_dead" {
		t.Fatalf("resubmit: %+v existing=%v %v; want job_dead", again, existing, err)
	}
}
