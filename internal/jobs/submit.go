package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Submit creates and enqueues a single job.
//
// The message is published before the record is written: a crash in
// between leaves a message without a record, which workers drop after a
// grace period, and the caller saw an error, so no job is lost that was
// acknowledged. (The other order would leave a queued record no message
// will ever run.)
func (s *Store) Submit(ctx context.Context, sp Spec) (_ *Job, _ bool, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, false, err
	}
	defer func() { err = done(err) }()
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
	var claim idemClaim
	if sp.IdempotencyKey != "" {
		j, c, err := s.claimKey(ctx, sp.Tenant, sp.IdempotencyKey, id, requestFingerprint(sp))
		if err != nil || j != nil {
			return sameRequest(j, sp, err)
		}
		claim, id = c, c.id
		if s.claimed != nil {
			s.claimed(id)
		}
	}
	j, existing, refused, err := s.create(ctx, sp, id)
	if refused && claim.rev != 0 {
		s.releaseClaim(claim)
	}
	if existing {
		return sameRequest(j, sp, err)
	}
	return j, existing, err
}

// sameRequest returns the job an earlier submit with sp's idempotency key
// made, as Submit's existing result, when it was made from the same
// request; a different one is ErrIdempotencyMismatch (Stripe's and the
// IETF Idempotency-Key draft's rule). Before, any body with a used key got
// the first job: a client reusing a key by mistake was told its new
// request was accepted and got another request's answer. A record from
// before fingerprints were stored has none and matches anything.
func sameRequest(j *Job, sp Spec, err error) (*Job, bool, error) {
	if err != nil || j == nil {
		return j, j != nil, err
	}
	if j.fingerprint != "" && j.fingerprint != requestFingerprint(sp) {
		return nil, false, fmt.Errorf("jobs: idempotency key of job %s: %w", j.ID, ErrIdempotencyMismatch)
	}
	return j, true, nil
}

// requestFingerprint identifies an async request for its idempotency key:
// its path and its body byte for byte (a retry sends the same bytes).
func requestFingerprint(sp Spec) string {
	h := sha256.New()
	h.Write([]byte(sp.Path))
	h.Write([]byte{0})
	h.Write(sp.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// create stores job id's body, publishes its message and writes its
// record. refused reports an error after which no record of id exists
// or can appear (the body or the message not stored, the record
// refused): the submit left no job, and its idempotency claim may go. An
// error writing the record that may have written it (a timeout) is not.
func (s *Store) create(ctx context.Context, sp Spec, id string) (j *Job, existing, refused bool, err error) {
	key := singleKey(id)
	rec := &jobRecord{
		Job: Job{
			ID: id, Object: "job", Status: StatusQueued, Path: sp.Path, Model: sp.Model,
			Class: sp.Class, CreatedAt: s.now().Unix(),
		},
		Tenant:  sp.Tenant,
		Webhook: sp.Webhook,
	}
	if sp.IdempotencyKey != "" {
		rec.Fingerprint = requestFingerprint(sp)
	}
	if sp.Webhook != "" {
		rec.Job.WebhookState = &WebhookDelivery{Status: WebhookPending}
	}
	// Each write rides out a stream leader election (whileLeaderless):
	// one that no leader took stored nothing and is sent again.
	var bodyRev uint64
	err = whileLeaderless(ctx, s.o.RequestTimeout, s.leaderless, func() (err error) {
		bodyRev, err = s.bodies.Put(ctx, key, sp.Body)
		return err
	})
	if err != nil {
		return nil, false, true, fmt.Errorf("jobs: storing body: %w", s.storeFull(err))
	}
	// Refused for lack of room, what this submit stored goes at once
	// (dropRefused). Not with an idempotency key: a resubmission with it
	// may share the job's key, and its deduplicated publish relies on
	// this submit's message.
	ownKey := sp.IdempotencyKey == ""
	var ack *jetstream.PubAck
	pubAt := s.now() // before the publish: what elapses from it bounds the message's age
	err = whileLeaderless(ctx, s.o.RequestTimeout, s.leaderless, func() (err error) {
		ack, err = s.enqueue(ctx, sp.Class, key)
		return err
	})
	if err == nil && ack.Duplicate {
		pubAt = s.now()
		err = s.enqueueAgain(ctx, sp.Class, key, &ack)
	}
	if err != nil {
		if ownKey && isStoreFullErr(err) {
			s.dropRefused(key, bodyRev, 0)
		}
		// Even if a timed-out publish was stored, no record will name
		// its message: a worker drops it.
		return nil, false, true, s.storeFull(err)
	}
	if s.enqueued != nil {
		s.enqueued(id)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, false, true, fmt.Errorf("jobs: encoding job: %w", err)
	}
	err = whileLeaderless(ctx, s.o.RequestTimeout, s.leaderless, func() error {
		_, err := s.jobs.Create(ctx, key, b)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another submitter with the same idempotency key won the race.
		j, err := s.Job(ctx, sp.Tenant, id)
		return j, err == nil, false, err
	} else if err != nil {
		full := isStoreFullErr(err)
		if ownKey && full {
			s.dropRefused(key, bodyRev, ack.Sequence)
		}
		return nil, false, full, fmt.Errorf("jobs: writing job: %w", s.storeFull(err))
	}
	s.noteStored(int64(len(sp.Body) + len(b)))
	if s.now().Sub(pubAt) >= republishAfter {
		// The message may have been dropped as an orphan while this
		// submit stalled before its record (republishAfter).
		if err := s.enqueueAgain(context.WithoutCancel(ctx), sp.Class, key, &ack); err != nil {
			s.log.Error("job written late, its message not sent again: it may never run", "job", id, "err", err)
		}
	}
	if sp.Webhook != "" {
		// After the record: the resend drops an index key without one.
		s.indexWebhook(ctx, id)
	}
	return rec.job(), false, false, nil
}

// republishAfter: a submit whose record is written this long or more
// after it began its publish sends the message once more (enqueueAgain).
// A worker drops a message that has waited orphanGrace (1 min) for its
// record, taken for a submitter that died between the two; a submitter
// only stalled (a paused process, a frozen VM, writes retried through
// leader elections) then wrote a queued record no message would run.
// The record's write is not conditional on the message (a KV write
// cannot ask the work stream), so the check comes after it: measured
// from before the publish to after the record is written, the time is at
// least the message's age at the write, so a submit that measures less
// than orphanGrace wrote its record before any worker could drop its
// message. 5 s, not orphanGrace, leaves room for the worker's clock
// running ahead of the NATS server's, whose timestamps it compares with.
// Cost: one message more, skipped by whichever worker gets it second
// (settled), on a submit that slow only.
const republishAfter = 5 * time.Second

// enqueue publishes the message that makes a worker run the job at key.
func (s *Store) enqueue(ctx context.Context, class, key string) (*jetstream.PubAck, error) {
	ack, err := s.js.Publish(ctx, workSubjects+class, []byte(key), jetstream.WithMsgID(key))
	if err != nil {
		return nil, fmt.Errorf("jobs: enqueueing %s: %w", key, err)
	}
	return ack, nil
}

// enqueueAgain publishes key's message once more, under a Nats-Msg-Id of
// its own, after the work stream took its publish as a duplicate: a
// message under key was stored within the duplicate window (2 min) by a
// submit with the same idempotency key that wrote no record (it died, or
// was refused after its publish), and a worker drops such a message once
// it has waited orphanGrace (1 min) for its record. A submit that took
// that claim over would otherwise write a queued record no message runs.
// The worker skips whichever of the two comes second (settled: the
// record is running under the other's sequence, or done). *ack becomes
// the new message's.
func (s *Store) enqueueAgain(ctx context.Context, class, key string, ack **jetstream.PubAck) error {
	nonce, err := s.newID("", 8)
	if err != nil {
		return err
	}
	return whileLeaderless(ctx, s.o.RequestTimeout, s.leaderless, func() error {
		a, err := s.js.Publish(ctx, workSubjects+class, []byte(key), jetstream.WithMsgID(key+"."+nonce))
		if err != nil {
			return fmt.Errorf("jobs: enqueueing %s: %w", key, err)
		}
		*ack = a
		return nil
	})
}

// Job returns the tenant's single job. Jobs of batches are reached through
// their batch.
func (s *Store) Job(ctx context.Context, tenant, id string) (_ *Job, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
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
func (s *Store) CancelJob(ctx context.Context, tenant, id string) (_ *Job, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
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
