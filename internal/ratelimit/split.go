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
	parts, sent := f.admitParts(client, keys, groups, ops, now)
	ds := make([]Decision, len(ops))
	errs := make([]error, len(ops))
	if len(sent) > 0 {
		f.sendParts(ctx, each, parts, sent, now, ds, errs)
	}
	if err := abandonIfCallerLeft(ctx, parts, errs); err != nil {
		return nil, err
	}
	if !f.settleParts(parts, errs, now) {
		return ds, nil
	}
	if f.opt.Mode == FailClosed {
		return f.refuseSplit(ctx, each, parts, ops, ds, now)
	}
	return f.meterFailedLocally(ctx, parts, ops, ds, now)
}

// splitPart is one master's share of a split check (applySplit).
type splitPart struct {
	idx   []int // its ops, as indexes into the check's ops
	call  redisconn.Call
	sent  bool // admitted by the master's bypass
	retry time.Duration
	cause error // the failure that put the part in the failure mode; nil: skipped by its bypass
}

// admitParts asks each master's bypass whether its buckets go to Redis;
// sent is the admitted parts' ops, in the parts' order.
func (f *FailoverStore) admitParts(client rueidis.Client, keys []string, groups [][]int, ops []Op, now time.Time) (parts []splitPart, sent []Op) {
	parts = make([]splitPart, len(groups))
	for g, idx := range groups {
		gk := make([]string, len(idx))
		for i, j := range idx {
			gk[i] = keys[j]
		}
		call, retry, ok := f.bypass.Admit(now, client, gk...)
		parts[g] = splitPart{idx: idx, call: call, sent: ok, retry: retry}
		if ok {
			for _, j := range idx {
				sent = append(sent, ops[j])
			}
		}
	}
	return parts, sent
}

// sendParts sends the admitted ops in one round trip and puts each answer
// (ds, errs) at its op's index.
func (f *FailoverStore) sendParts(ctx context.Context, each eachApplier, parts []splitPart, sent []Op, now time.Time, ds []Decision, errs []error) {
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

// abandonIfCallerLeft returns an op's error once the caller gave up (ctx
// ended), having abandoned the sent parts' calls: not the store's fault,
// so no state change, and no decision either.
func abandonIfCallerLeft(ctx context.Context, parts []splitPart, errs []error) error {
	for _, err := range errs {
		if err != nil && ctx.Err() != nil {
			for _, p := range parts {
				if p.sent {
					p.call.Abandon()
				}
			}
			return err
		}
	}
	return nil
}

// settleParts tells each sent part's master its call's outcome (an outage
// first among its ops' errors) and reports whether any part takes the
// failure mode: failed, or skipped by its bypass.
func (f *FailoverStore) settleParts(parts []splitPart, errs []error, now time.Time) (failed bool) {
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
	return failed
}

// refuseSplit is fail-closed's answer to a split check with a failed
// part: the request is refused, and what the live masters' buckets took
// is given back (best effort, as the Limiter's own refunds).
func (f *FailoverStore) refuseSplit(ctx context.Context, each eachApplier, parts []splitPart, ops []Op, ds []Decision, now time.Time) ([]Decision, error) {
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

// meterFailedLocally is fail-open's answer to a split check with a failed
// part: its buckets are metered here at this replica's share, the others'
// decisions (ds) stand as Redis gave them.
func (f *FailoverStore) meterFailedLocally(ctx context.Context, parts []splitPart, ops []Op, ds []Decision, now time.Time) ([]Decision, error) {
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
