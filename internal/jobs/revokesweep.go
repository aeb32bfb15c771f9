package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The revocation sweep: a reload that leaves a tenant without a
// credential ends its queued work at once, without waiting for a worker
// to take it (revoked.go's path, which is the only one while workers are
// busy, paused, or absent: queue.workers 0 and no `sluice worker`). A
// revoked tenant's active batches are cancelled (the tracker then ends
// their queued lines batch_cancelled and the batch cancelled, with its
// files, as on a client's cancel), and its queued single jobs end failed
// api_key_revoked, attempts 0, as revoke ends them. Both are
// compare-and-swap writes from a state the worker's path also leaves
// (in_progress / validating; queued), so whichever comes second changes
// nothing and reports nothing: a job is counted and its webhook sent once.
//
// The sweep reads what is bounded: the active-batch index (at most
// MaxActiveBatches) and the work stream, which holds exactly the backlog
// (work-queue retention). It reads at most a pass's limit of records per
// call and keeps its place in a RevokeSweep, so a large backlog is swept
// over several passes without one long hold on the store.

// RevokeSweep is a revocation sweep's place between passes. The zero
// value starts a sweep: the active batches first, then the work stream
// from its first message to the last one there when the stream part began
// (a revoked tenant submits nothing after the reload).
type RevokeSweep struct {
	batchesDone, streamDone bool
	next, last              uint64 // work stream sequences; last 0 until read
}

// RevokePass is what one pass of the sweep did.
type RevokePass struct {
	Batches int  // batches moved to cancelling
	Jobs    int  // queued single jobs ended failed api_key_revoked
	Done    bool // nothing left to read
}

// SweepRevoked runs one pass of the revocation sweep c: it reads at most
// limit records (batches and work-stream messages) and ends the queued
// work of every tenant refuse reports. A pass that fails keeps c where it
// was, to be tried again.
func (s *Store) SweepRevoked(ctx context.Context, refuse func(tenant string) bool, c *RevokeSweep, limit int) (_ RevokePass, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return RevokePass{}, err
	}
	defer func() { err = done(err) }()
	var p RevokePass
	budget := limit
	if !c.batchesDone {
		n, read, err := s.cancelRevokedBatches(ctx, refuse)
		p.Batches, budget = n, budget-read
		if err != nil {
			return p, err
		}
		c.batchesDone = true
	}
	n, err := s.failRevokedJobs(ctx, refuse, c, max(budget, 1))
	p.Jobs = n
	if err != nil {
		return p, err
	}
	p.Done = c.streamDone
	return p, nil
}

// cancelRevokedBatches moves every active batch of a refused tenant to
// cancelling. It returns how many it moved and how many batch records it
// read. The index is capped (MaxActiveBatches): one pass reads it whole.
func (s *Store) cancelRevokedBatches(ctx context.Context, refuse func(string) bool) (cancelled, read int, err error) {
	ids, err := s.activeIndex(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("jobs: listing active batches: %w", err)
	}
	for _, id := range ids {
		e, err := s.batch.Get(ctx, activeKey(id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // finished since
		}
		if err != nil {
			return cancelled, read, fmt.Errorf("jobs: reading the active batch %s: %w", id, err)
		}
		b, _, err := s.getBatch(ctx, string(e.Value()))
		read++
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return cancelled, read, err
		}
		if !refuse(b.Tenant) {
			continue
		}
		_, err = s.CancelBatch(ctx, b.Tenant, id)
		switch {
		case err == nil:
			cancelled++ // or it was cancelling already: CancelBatch tells no difference, nor need the log
		case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
			// Ended, or ending, meanwhile.
		default:
			return cancelled, read, err
		}
	}
	return cancelled, read, nil
}

// failRevokedJobs reads up to limit messages of the work stream from c's
// place and ends each queued single job of a refused tenant failed
// api_key_revoked. Batch lines are their batch's (cancelRevokedBatches).
// The messages stay: a worker that takes one finds its job ended and
// acks it, as for a job its client cancelled.
func (s *Store) failRevokedJobs(ctx context.Context, refuse func(string) bool, c *RevokeSweep, limit int) (int, error) {
	st, err := s.js.Stream(ctx, workStream)
	if err != nil {
		return 0, fmt.Errorf("jobs: the work stream: %w", err)
	}
	if c.last == 0 {
		info, err := st.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("jobs: the work stream: %w", err)
		}
		if info.State.Msgs == 0 {
			c.streamDone = true
			return 0, nil
		}
		c.next, c.last = info.State.FirstSeq, info.State.LastSeq
	}
	ended := 0
	for ; c.next <= c.last && limit > 0; c.next++ {
		limit--
		m, err := st.GetMsg(ctx, c.next)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // acked (deleted) since
		}
		if err != nil {
			return ended, fmt.Errorf("jobs: reading the work stream at %d: %w", c.next, err)
		}
		key := string(m.Data)
		if !strings.HasPrefix(key, singleKey("")) {
			continue
		}
		r, changed, err := s.transition(ctx, key, func(r *jobRecord) error {
			if r.Job.Status != StatusQueued || !refuse(r.Tenant) {
				return errNoChange // running (the worker's path ends it), ended, or not revoked
			}
			r.Job.Status = StatusFailed
			r.Job.FinishedAt = s.now().Unix()
			r.Job.Error = &JobError{Code: CodeRevoked, Message: revokedMessage}
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return ended, err
		}
		if changed {
			ended++
			s.stats.revoked.Add(1)
			s.hooks.notify(r)
		}
	}
	c.streamDone = c.next > c.last
	return ended, nil
}
