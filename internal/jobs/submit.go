package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// idemWait bounds how long a resubmission waits for the record of the job
// its idempotency key names: the first submitter writes the key before
// the record.
const idemWait = 2 * time.Second

// Submit creates and enqueues a single job.
//
// The message is published before the record is written: a crash in
// between leaves a message without a record, which workers drop after a
// grace period, and the caller saw an error, so no job is lost that was
// acknowledged. (The other order would leave a queued record no message
// will ever run.)
func (s *Store) Submit(ctx context.Context, sp Spec) (*Job, bool, error) {
	if err := s.checkOpen(); err != nil {
		return nil, false, err
	}
	if sp.Class == "" {
		sp.Class = defaultClasses()[0]
	}
	if !validToken.MatchString(sp.Class) {
		return nil, false, fmt.Errorf("jobs: invalid class %q", sp.Class)
	}
	if sp.Path == "" || len(sp.Body) == 0 {
		return nil, false, errors.New("jobs: a job needs a path and a body")
	}
	if err := s.admitNew(ctx); err != nil {
		return nil, false, err
	}
	id, err := s.newID("job_", 16)
	if err != nil {
		return nil, false, err
	}
	if sp.IdempotencyKey != "" {
		ik := idemKey(sp.Tenant, sp.IdempotencyKey)
		if _, err := s.idem.Create(ctx, ik, []byte(id)); errors.Is(err, jetstream.ErrKeyExists) {
			e, err := s.idem.Get(ctx, ik)
			if err != nil {
				return nil, false, fmt.Errorf("jobs: reading idempotency key: %w", err)
			}
			id = string(e.Value())
			if j, err := s.awaitJob(ctx, sp.Tenant, id); err == nil {
				return j, true, nil
			} else if !errors.Is(err, ErrNotFound) {
				return nil, false, err
			}
			// The first submitter claimed the key and never wrote the
			// record (it died): create the job under the claimed id. If
			// it was only slow, the record Create below decides.
		} else if err != nil {
			return nil, false, fmt.Errorf("jobs: claiming idempotency key: %w", s.storeFull(err))
		}
	}
	key := singleKey(id)
	rec := &jobRecord{
		Job: Job{
			ID: id, Object: "job", Status: StatusQueued, Path: sp.Path, Model: sp.Model,
			Class: sp.Class, CreatedAt: s.now().Unix(),
		},
		Tenant:  sp.Tenant,
		Webhook: sp.Webhook,
	}
	bodyRev, err := s.bodies.Put(ctx, key, sp.Body)
	if err != nil {
		return nil, false, fmt.Errorf("jobs: storing body: %w", s.storeFull(err))
	}
	// Refused for lack of room, what this submit stored goes at once
	// (dropRefused). Not with an idempotency key: a resubmission with it
	// may share the job's key, and its deduplicated publish relies on
	// this submit's message.
	ownKey := sp.IdempotencyKey == ""
	ack, err := s.enqueue(ctx, sp.Class, key)
	if err != nil {
		if ownKey && isStoreFullErr(err) {
			s.dropRefused(key, bodyRev, 0)
		}
		return nil, false, s.storeFull(err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, false, fmt.Errorf("jobs: encoding job: %w", err)
	}
	if _, err := s.jobs.Create(ctx, key, b); errors.Is(err, jetstream.ErrKeyExists) {
		// Another submitter with the same idempotency key won the race.
		j, err := s.Job(ctx, sp.Tenant, id)
		return j, err == nil, err
	} else if err != nil {
		if ownKey && isStoreFullErr(err) {
			s.dropRefused(key, bodyRev, ack.Sequence)
		}
		return nil, false, fmt.Errorf("jobs: writing job: %w", s.storeFull(err))
	}
	s.noteStored(int64(len(sp.Body) + len(b)))
	return rec.job(), false, nil
}

// enqueue publishes the message that makes a worker run the job at key.
func (s *Store) enqueue(ctx context.Context, class, key string) (*jetstream.PubAck, error) {
	ack, err := s.js.Publish(ctx, workSubjects+class, []byte(key), jetstream.WithMsgID(key))
	if err != nil {
		return nil, fmt.Errorf("jobs: enqueueing %s: %w", key, err)
	}
	return ack, nil
}

// awaitJob reads a job, waiting up to idemWait for it to appear.
func (s *Store) awaitJob(ctx context.Context, tenant, id string) (*Job, error) {
	deadline := time.Now().Add(idemWait)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		j, err := s.Job(ctx, tenant, id)
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			return j, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// Job returns the tenant's single job. Jobs of batches are reached through
// their batch.
func (s *Store) Job(ctx context.Context, tenant, id string) (*Job, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	r, _, err := s.getJob(ctx, singleKey(id))
	if err != nil {
		return nil, err
	}
	if r.Tenant != tenant {
		return nil, ErrNotFound
	}
	return r.job(), nil
}

// CancelJob cancels a queued job at once; a running one is marked
// CancelRequested and becomes cancelled when its result arrives (the
// returned job is still running).
func (s *Store) CancelJob(ctx context.Context, tenant, id string) (*Job, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	now := s.now().Unix()
	r, changed, err := s.transition(ctx, singleKey(id), func(r *jobRecord) error {
		switch {
		case r.Tenant != tenant:
			return ErrNotFound
		case r.Job.Status.Terminal():
			return ErrConflict
		case r.Job.Status == StatusRunning:
			if r.CancelRequested {
				return errNoChange
			}
			r.CancelRequested = true
		default:
			cancelRecord(r, now, "cancelled", "cancelled by the client")
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case errors.Is(err, ErrConflict):
		return r.job(), fmt.Errorf("jobs: job %s is %s: %w", id, r.Job.Status, ErrConflict)
	case err != nil:
		return nil, err
	}
	if changed && r.Job.Status.Terminal() {
		s.hooks.notify(r)
	}
	return r.job(), nil
}

// cancelRecord makes r cancelled, with why in its error.
func cancelRecord(r *jobRecord, now int64, code, msg string) {
	r.Job.Status = StatusCancelled
	r.Job.FinishedAt = now
	r.Job.Error = &JobError{Code: code, Message: msg}
}
