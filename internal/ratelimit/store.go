package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps GCRA buckets by key. Every implementation runs the same
// algorithm (gcra), so the same sequence of operations at the same times
// gives the same decisions whichever store holds the buckets.
//
// Each operation is atomic on its bucket. Operations on different buckets
// are not atomic with each other: the Limiter makes a multi-bucket check
// all-or-nothing by refunding what it took when any bucket refuses.
type Store interface {
	// Take takes cost (>= 0) units from key's bucket if they fit, else takes
	// nothing. Cost 0 asks for the bucket's state and is always allowed,
	// in debt too: it takes nothing.
	Take(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error)
	// Charge applies cost unconditionally: a positive cost charges usage
	// learned after the fact (the backend reported more tokens than were
	// reserved), a negative one refunds.
	Charge(ctx context.Context, key string, l Limit, cost int64, now time.Time) (Decision, error)
	// Apply runs several operations, in order, in one round trip where the
	// store is remote. It fails as a whole: on error some operations may
	// have been applied and others not. With an error it may still return
	// one refusal per operation (FailoverStore in fail-closed mode) whose
	// RetryAfter says when to try again.
	Apply(ctx context.Context, ops []Op, now time.Time) ([]Decision, error)
}

// ErrStoreUnavailable is returned (wrapped, with the cause) when the shared
// store cannot be reached and the failure mode is fail-closed. The gateway
// answers 503 with Retry-After, not 429: the client is not over its limit.
var ErrStoreUnavailable = errors.New("rate limit store unavailable")

// checkOp validates an operation before it reaches a store.
func checkOp(op Op) error {
	if err := op.Limit.Validate(); err != nil {
		return errInvalid{fmt.Errorf("ratelimit: key %q: %w", op.Key, err)}
	}
	if !op.Force && op.Cost < 0 {
		return errInvalid{fmt.Errorf("ratelimit: key %q: take of negative cost %d (use a charge to refund)", op.Key, op.Cost)}
	}
	if op.Cost > 1<<40 || op.Cost < -(1<<40) {
		return errInvalid{fmt.Errorf("ratelimit: key %q: cost %d out of range", op.Key, op.Cost)}
	}
	return nil
}

// one runs a single operation through Apply. A store may return decisions
// along with an error (fail-closed refusals); they are passed on.
func one(ctx context.Context, s Store, op Op, now time.Time) (Decision, error) {
	ds, err := s.Apply(ctx, []Op{op}, now)
	if len(ds) == 0 {
		return Decision{}, err
	}
	return ds[0], err
}
