package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotency keys, Stripe's semantics: a key whose job was accepted
// names that job for every later submit of the same request with it
// (another request with it is refused: sameRequest); a submit that was
// refused leaves no trace, so the client's retry with the key goes ahead
// at once as a new submit.
//
// The first submitter claims the key (the idem bucket maps it to the job
// id it is about to create) before it writes the job; a concurrent
// duplicate finds the claim and waits for that job's record. A submit
// refused after claiming (the store refused its body, message or record)
// releases the claim, and a duplicate waiting on it then claims the key
// itself; a submit that took a stalled claim over and was then refused
// leaves it (releaseClaim): the stalled submitter may still write. A
// submit that failed in a way that may have written the record anyway (a
// timeout on that write) keeps the claim: a retry finds the job, or after
// idemWait takes the claim over for the same id, as after a crash.
//
// The claim keeps the request's fingerprint (idemclaim.go), and only the
// same request takes it over: another request with the key is refused at
// once while the claim stands (ErrIdempotencyMismatch, the gateway's 422),
// whether the claimant is writing its job, stalled, or dead. Before, it
// waited idemWait and then made the job under the claimant's id with its
// own body: the claimant's client, told that id in its 202 (or about to
// be), could read the other request's answer.

// idemWait bounds how long a resubmission waits for the record of the job
// its idempotency key names: the first submitter writes the key before
// the record.
const idemWait = 2 * time.Second

// claimTries bounds how often one submit claims anew a key released
// under it (each time by another submit's refusal).
const claimTries = 4

// errClaimReleased: the claim a submit waited on was released (its
// submitter was refused) or taken over.
var errClaimReleased = errors.New("jobs: the idempotency key's claim was released")

// idemClaim is a submit's claim of an idempotency key: the bucket key,
// the job id it names and the revision written. took: the claim was
// another submitter's, taken over after idemWait (that submitter may
// still write its job under id).
type idemClaim struct {
	key, id string
	rev     uint64
	took    bool
}

// claimKey claims tenant's idempotency key for a new job id, or returns
// the job an earlier submit with it made. fp is the request's fingerprint
// (requestFingerprint), kept on the claim: a key claimed for another
// request is ErrIdempotencyMismatch at once, whether that request's job
// is written yet or not, and is never taken over. A claim taken over
// from a submitter of the same request that never wrote its record (or
// from a claim written before fingerprints, which names none) names that
// submitter's id.
func (s *Store) claimKey(ctx context.Context, tenant, key, id, fp string) (*Job, idemClaim, error) {
	ik := idemKey(tenant, key)
	for try := 1; ; try++ {
		again := try < claimTries
		rev, err := s.createClaim(ctx, ik, id, fp)
		if err == nil {
			return nil, idemClaim{key: ik, id: id, rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, idemClaim{}, fmt.Errorf("jobs: claiming idempotency key: %w", s.storeFull(err))
		}
		e, err := s.readClaim(ctx, ik)
		if errors.Is(err, jetstream.ErrKeyNotFound) && again {
			continue // released since
		}
		if err != nil {
			return nil, idemClaim{}, fmt.Errorf("jobs: reading idempotency key: %w", err)
		}
		if e.fp != "" && e.fp != fp {
			// Stripe compares a key's stored parameters before anything
			// else: another request's claim is a 422 now, and its job
			// (made, or to be made) stays that request's alone. A job
			// written already decides, as for any resubmission
			// (sameRequest: one without a fingerprint replays).
			j, err := s.Job(ctx, tenant, e.id)
			if errors.Is(err, ErrNotFound) {
				err = fmt.Errorf("jobs: idempotency key claimed for job %s: %w", e.id, ErrIdempotencyMismatch)
			}
			return j, idemClaim{}, err
		}
		j, err := s.awaitJob(ctx, tenant, e.id, func(ctx context.Context) bool {
			cur, err := s.idem.Get(ctx, ik)
			return err == nil && cur.Revision() == e.rev
		})
		switch {
		case err == nil:
			return j, idemClaim{}, nil
		case errors.Is(err, errClaimReleased) && again:
			continue
		case !errors.Is(err, ErrNotFound):
			return nil, idemClaim{}, err
		}
		// The claim's submitter never wrote the record in idemWait (it
		// died, or is very slow): take the claim over for its id, unless
		// it changed meanwhile. If it was only slow, the record Create
		// decides (the same request either way: its body is the same).
		rev, err = s.writeClaim(ctx, ik, e.id, fp, e.rev)
		if errors.Is(err, jetstream.ErrKeyExists) && again {
			continue
		}
		if err != nil {
			return nil, idemClaim{}, fmt.Errorf("jobs: taking over idempotency key: %w", s.storeFull(err))
		}
		return nil, idemClaim{key: ik, id: e.id, rev: rev, took: true}, nil
	}
}

// releaseClaim removes a refused submit's claim, so a retry with its key
// goes ahead at once. A claim taken over (c.took) stays: the refusal says
// only that this submit wrote no job, not that the submitter it took the
// claim from, stalled rather than dead, will not write one under c.id. Had
// it gone, a later submit with the key would claim it anew for another id
// and run the request a second time once the stalled one wrote its job.
// Left, the claim is as the taker found it (the same id and request; only
// its revision is new): a retry waits idemWait for that job, then takes
// the claim over, as before the taker came. As dropRefused, it purges
// rather than deletes (a KV delete writes a marker, which a full store
// refuses; a purge writes nothing), and only up to the claim's revision:
// a claim taken over since is the taker's and stays.
func (s *Store) releaseClaim(c idemClaim) {
	if c.took {
		s.log.Debug("a refused submit keeps the idempotency key it took over: its first submitter may still write the job", "job", c.id)
		return
	}
	ctx, cancel := s.cleanupContext()
	defer cancel()
	st, err := s.js.Stream(ctx, "KV_"+idemBucket)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+idemBucket+"."+c.key), jetstream.WithPurgeSequence(c.rev+1))
	}
	if err != nil {
		// The claim stays: a retry with the key waits idemWait, then
		// takes it over, as after a crash.
		s.log.Warn("releasing a refused submit's idempotency key", "job", c.id, "err", err)
	}
}

// awaitJob reads a job, waiting up to idemWait for it to appear while
// claimed reports its claim still held; errClaimReleased once not.
func (s *Store) awaitJob(ctx context.Context, tenant, id string, claimed func(context.Context) bool) (*Job, error) {
	deadline := s.now().Add(s.idemWait)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		j, err := s.Job(ctx, tenant, id)
		if !errors.Is(err, ErrNotFound) {
			return j, err
		}
		if !claimed(ctx) {
			// The record may have been written just before the claim
			// went (a takeover's): read it once more.
			if j, err := s.Job(ctx, tenant, id); !errors.Is(err, ErrNotFound) {
				return j, err
			}
			return nil, errClaimReleased
		}
		if s.now().After(deadline) {
			return nil, err
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
