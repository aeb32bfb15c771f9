package ratelimit

import (
	"context"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-gw/sluice/internal/redisconn"
)

// eachApplier is a shared store that answers each operation of an Apply
// apart (RedisStore.ApplyEach): on a Redis Cluster the masters fail
// apart, and an operation on a live master is still answered when
// another master's failed.
type eachApplier interface {
	ApplyEach(ctx context.Context, ops []Op, now time.Time) ([]Decision, []error)
}

// applySplit is Apply for a check whose buckets live on more than one
// Cluster master (groups: the ops of each, as indexes into ops and keys).
// Each bucket is its own script call on its own key, so nothing ties a
// request's buckets together in Redis (the Limiter makes the check
// all-or-nothing by refunds): each master's buckets are admitted by that
// master's bypass, and all of the admitted ones go in one round trip.
// A master that fails (or is bypassed) puts its buckets alone in the
// failure mode: fail-open meters them at this replica's share, the other
// buckets still in Redis; fail-closed refuses the request, after giving
// back what the live masters' buckets took. Before, such a check was
// decided by the whole-Redis bypass, and its failures on one master
// bypassed the whole Redis: every key in the failure mode.
func (f *FailoverStore) applySplit(ctx context.Context, each eachApplier, client rueidis.Client, keys []string,
	groups [][]int, ops []Op, now time.Time) ([]Decision, error) {
	for _, op := range ops {
		if err := checkOp(op); err != nil {
			return nil, err
		}
	}
	type part struct {
		idx   []int
		call  redisconn.Call
		sent  bool
		retry time.Duration
		cause error // the failure that put the part in the failure mode; nil: skipped by its bypass
	}
	parts := make([]part, len(groups))
	var sent []Op
	for g, idx := range groups {
		gk := make([]string, len(idx))
		for i, j := range idx {
			gk[i] = keys[j]
		}
		call, retry, ok := f.bypass.Admit(now, client, gk...)
		parts[g] = part{idx: idx, call: call, sent: ok, retry: retry}
		if ok {
			for _, j := range idx {
				sent = append(sent, ops[j])
			}
		}
	}
	ds := make([]Decision, len(ops))
	errs := make([]error, len(ops))
	if len(sent) > 0 {
		cctx, cancel := context.WithTimeout(ctx, f.opt.Timeout)
		sds, serrs := each.ApplyEach(cctx, sent, now)
		cancel()
		k := 0
		for _, p := range parts {
			if !p.sent {
				continue
			}
			for _, j := range p.idx {
				ds[j], errs[j] = sds[k], serrs[k]
				k++
			}
		}
	}

	for _, err := range errs {
		if err != nil && ctx.Err() != nil {
			// The caller gave up: not the store's fault, so no state
			// change, and no decision either.
			for _, p := range parts {
				if p.sent {
					p.call.Abandon()
				}
			}
			return nil, err
		}
	}
	failed := false
	for g := range parts {
		p := &parts[g]
		if !p.sent {
			failed = true
			continue
		}
		var err error
		for _, j := range p.idx {
			if errs[j] != nil && (err == nil || redisconn.IsOutage(errs[j])) {
				err = errs[j]
			}
		}
		switch {
		case err == nil:
			p.call.Up()
		case !redisconn.IsOutage(err):
			// An error reply: Redis answered about this call; its
			// buckets alone take the failure mode (as in Apply).
			f.errs.Inc()
			p.call.Up()
			p.cause, failed = err, true
		default:
			f.errs.Inc()
			p.retry, _ = p.call.Down(now, err)
			p.cause, failed = err, true
		}
	}
	if !failed {
		return ds, nil
	}

	if f.opt.Mode == FailClosed {
		// The request is refused: what the live masters' buckets took is
		// given back (best effort, as the Limiter's own refunds).
		var back []Op
		retry := time.Duration(0)
		var cause error
		for _, p := range parts {
			if !p.sent || p.cause != nil {
				retry = max(retry, p.retry)
				if cause == nil {
					cause = p.cause
				}
				continue
			}
			for _, j := range p.idx {
				if op := ops[j]; !op.Force && op.Cost > 0 && ds[j].Allowed {
					back = append(back, Op{Key: op.Key, Limit: op.Limit, Cost: -op.Cost, Force: true})
				}
			}
		}
		if len(back) > 0 {
			cctx, cancel := context.WithTimeout(ctx, f.opt.Timeout)
			each.ApplyEach(cctx, back, now)
			cancel()
		}
		return f.fallbackApply(ctx, ops, now, retry, cause)
	}
	var local []Op
	var at []int
	for _, p := range parts {
		if p.sent && p.cause == nil {
			continue
		}
		for _, j := range p.idx {
			op := ops[j]
			op.Limit = op.Limit.Share(f.opt.Replicas)
			local = append(local, op)
			at = append(at, j)
		}
	}
	lds, err := f.fallback.Apply(ctx, local, now)
	if err != nil {
		return nil, err
	}
	for i, j := range at {
		ds[j] = lds[i]
	}
	return ds, nil
}
