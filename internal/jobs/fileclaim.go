package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Exactly one process writes a batch's result files. Every tracker may
// finalize any batch (tracker.go), and the object store has no
// create-if-absent: two trackers that both looked for the output file
// before either had stored it both wrote it, each a full copy, and a
// reader of the first copy had to follow the second (filereader.go).
//
// So the writer first claims the files in the batch record, with the
// same compare-and-swap every batch change goes through: the claim names
// its process (Store.owner) and holds until a lease ends. A tracker that
// finds the files claimed by another process writes nothing: it waits,
// and a later evaluation finds the batch finished by the holder. A holder
// whose write fails (its gateway closing, NATS away) gives the claim
// back; one that dies leaves it to lapse: the first evaluation after the
// lease's end takes it over, by the same compare-and-swap, so two
// processes can never both think they took it.
//
// A holder that is slow rather than dead must not write after a takeover:
// it extends its lease as its lines go out (every third of a lease), and
// confirms it once more after its last byte and before the object store
// commits the file (the commit is the metadata message Put sends once
// its reader ends). A holder that lost its claim, or that cannot confirm
// it, aborts the Put, which drops the chunks it sent. The confirmation
// leaves a whole lease for a commit of one message, so only a clock that
// is wrong by more than a lease, or a commit slower than one, could let a
// holder that lost its claim commit.

// DefaultFileWriteLease is Options.FileWriteLease's default: a dead
// holder's batch is finished by another tracker within it (and a
// TrackInterval). Holders extend it every 10 s while they write, far
// more often than the writes of one line need.
const DefaultFileWriteLease = 30 * time.Second

// fileClaim is the right to write a batch's result files, held by Owner
// until Until (Unix milliseconds, Owner's clock).
type fileClaim struct {
	Owner string `json:"owner"`
	Until int64  `json:"until_ms"`
	// Lease is how long its writer claims for (ms; heartbeats and the
	// sweep lease): a claim ending more than two leases ahead of its
	// reader's clock was written by a clock that fast, and is lapsed
	// (Store.claimLapsed). 0: not said (the reader's own lease).
	Lease int64 `json:"lease_ms,omitempty"`
	// Via is the run name of the embedded NATS server the owner ran and wrote
	// through (Options.Embedded); empty when it wrote over the network.
	Via string `json:"via_embedded,omitempty"`
}

// overNetwork is the connected embedded server of a claim's reader for a
// claim that names none (file claims): never asked.
func overNetwork() string { return "" }

// errClaimLost ends a write whose claim another process holds now (it
// took the claim over), or whose batch another process finished.
var errClaimLost = errors.New("jobs: the claim on the batch's result files was taken over")

// startFinalization records the batch's target status (the first time)
// and, when the batch has result lines (needFiles), claims its files. It
// returns the batch as recorded and whether this process holds the
// claim; a terminal batch is returned as it is.
func (a *actor) startFinalization(ctx context.Context, target string, needFiles bool) (*batchRecord, bool, error) {
	s := a.s
	now := s.now()
	var claimed bool
	var took string // the owner whose lapsed claim was taken over
	b, _, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
		claimed, took = false, ""
		if batchTerminal(r.Batch.Status) {
			return errNoChange
		}
		changed := false
		if r.Target == "" {
			if target == batchCompleted && r.Batch.Status == batchCancelling {
				// Cancelled after the evaluation read the batch, its lines
				// all ended meanwhile: it ends cancelled, as it says it is
				// (cancelling -> finalizing -> completed before).
				target = batchCancelled
			}
			r.Target = target
			r.FilesAt = now.Unix()
			if target == batchCompleted {
				r.Batch.Status = batchFinalizing
				r.Batch.FinalizingAt = ptr(now.Unix())
			}
			changed = true
		}
		if needFiles {
			switch w := r.Writer; {
			case w != nil && w.Owner != s.owner && !w.lapsed(now, s.o.FileWriteLease, overNetwork):
				// Held: the holder writes; this tracker waits (a claim
				// ending two leases ahead, its writer's clock that fast,
				// is lapsed: Store.claimLapsed).
			default:
				if w != nil && w.Owner != s.owner {
					took = w.Owner
				}
				r.Writer = &fileClaim{Owner: s.owner, Until: now.Add(s.o.FileWriteLease).UnixMilli(), Lease: s.o.FileWriteLease.Milliseconds()}
				claimed, changed = true, true
			}
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if took != "" {
		s.stats.fileClaimTakeovers.Add(1)
		s.log.Info("took over the result files of a batch whose writer's lease ended",
			"batch", a.id, "previous_writer", took)
	}
	return b, claimed, nil
}

// claimKeeper keeps this process's claim on a batch's files while it
// writes them.
type claimKeeper struct {
	a       *actor
	renewed time.Time // when the lease was last extended (the Store's clock)
}

func (a *actor) keepClaim() *claimKeeper {
	return &claimKeeper{a: a, renewed: a.s.now()}
}

// keep extends the lease once a third of it has passed since it was last
// extended (every time, with confirm); errClaimLost when another process
// holds the claim now or finished the batch.
func (k *claimKeeper) keep(ctx context.Context, confirm bool) error {
	s := k.a.s
	now := s.now()
	if !confirm && now.Sub(k.renewed) < s.o.FileWriteLease/3 {
		return nil
	}
	_, _, err := s.updateBatch(ctx, k.a.key, func(r *batchRecord) error {
		if batchTerminal(r.Batch.Status) || r.Writer == nil || r.Writer.Owner != s.owner {
			return errClaimLost
		}
		r.Writer.Until = now.Add(s.o.FileWriteLease).UnixMilli()
		return nil
	})
	if err != nil {
		return fmt.Errorf("keeping the claim on batch %s's result files: %w", k.a.id, err)
	}
	k.renewed = now
	return nil
}

// releaseClaim gives up this process's claim after a write that failed
// (the gateway closing, NATS away): another tracker may take the files at
// once rather than after the lease. The Put that failed committed
// nothing after it returned; if it committed before failing, the next
// holder finds the file and does not write it again. ctx may have ended
// (the Store closing): the release gets a bounded one of its own.
func (a *actor) releaseClaim(ctx context.Context) {
	s := a.s
	ctx, cancel := s.requestContext(context.WithoutCancel(ctx))
	defer cancel()
	_, _, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
		if batchTerminal(r.Batch.Status) || r.Writer == nil || r.Writer.Owner != s.owner {
			return errNoChange
		}
		r.Writer = nil
		return nil
	})
	if err != nil {
		s.log.Debug("releasing the claim on a batch's result files", "batch", a.id, "err", err)
	}
}
