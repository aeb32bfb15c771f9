package proxy

import (
	"context"
	"time"

	"github.com/sluice-gw/sluice/internal/breaker"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// When a hedge is due and whether one may start: the hedge delay
// (hedgeDelay, shortened to nothing on a backend known to be slow), the
// choice of a first backend no hedge could rescue (avoidUnrescued), and
// the admission of a hedge against the budget, the model's spare slots
// and a backend with room (startHedge). hedge.go runs the race itself and
// ends its legs.

// hedgeDelay is how long a first attempt on b waits for its first token
// before a hedge: the request's HedgeAfter (the pool's tail), except on a
// backend already known to be slower than that, where the stream is hedged
// at once. Most of that backend's streams would be hedged anyway, each after
// waiting HedgeAfter for nothing: a backend ten times slower than its peers
// still gets a few streams (p2c's draws before it is found out, and the
// probes that try it again as its peak EWMA decays), and every one of those
// started at HedgeAfter plus a healthy backend's time to first token, about
// twice the pool's usual (the chaos row backend-slow's p99). Hedged at once,
// they start as fast as the hedge's backend allows; the first attempt still
// runs on to its own first token, the sample that keeps its backend's
// estimate slow. Known slower, by the first of:
//   - its typical time to first token is above HedgeAfter (a dozen slow
//     answers);
//   - its settled latency is: the smaller of its peak EWMA and the median of
//     its last three samples (two slow answers in a row, not one spike; the
//     measure routing ejects an outlier by), which also covers a probe of
//     an ejected backend whose peak EWMA has decayed to a few times its
//     peers';
//   - a stream sent there has waited longer than HedgeAfter with none of
//     its streams getting a first token since (endpoint.Backend.Stalled):
//     a backend that just turned slow, before any slow answer;
//   - its last answer took more than twice HedgeAfter: a hedge sent at the
//     delay would have started before it. One answer, not the two the
//     settled latency needs: between a backend's first slow answer and its
//     second (a slow engine's next decode step, 200 ms and more in the
//     chaos pool) its first token resets Stalled, its settled latency is
//     still its old one, and its peak EWMA times a small load is cheap to
//     p2c, so it drew streams that each waited the whole delay and then a
//     healthy first token (chaos backend-slow, traced: the p99 stream of
//     the --quick runs, 95-118 ms against a calm 49-71 ms). Acting on one
//     answer costs a hedge where a healthy backend had a spike of twice
//     the pool's tail, until its next answer.
func hedgeDelay(after time.Duration, b *endpoint.Backend, now time.Time) time.Duration {
	if b == nil {
		return after
	}
	if b.TypicalLatency() > after || min(b.Latency(now), b.RecentLatency()) > after || b.Stalled(now) > after ||
		b.LastLatency() > 2*after {
		return 0
	}
	return after
}

// avoidUnrescued is the backend a stream goes to first: b, unless b is
// known slower than the hedge delay (hedgeDelay 0: a stream there is hedged
// at once) and no hedge could start now (the budget is spent or the model
// has no spare slot, as under load), when another backend with room
// serves it instead. Such a stream is a probe of a slow backend (p2c tries
// an ejected one again as its peak EWMA decays), and without a hedge its
// client waits the slow backend's whole first token (the chaos row
// backend-slow on a loaded machine: several of its streams at 0.4-1 s,
// hedges skipped for capacity). Probes then wait until the pool has room
// to rescue them; b is kept when no other backend has room.
func (f *Forwarder) avoidUnrescued(in *Request, sel Selector, tried []*endpoint.Backend, b *endpoint.Backend) *endpoint.Backend {
	if in.HedgeAfter <= 0 || !in.Peek.Stream || f.opt.Attempts < 2 || hedgeDelay(in.HedgeAfter, b, f.opt.Now()) > 0 || f.hedgeRoom(in) {
		return b
	}
	if alt, _ := sel.Select(append(tried[:len(tried):len(tried)], b)); alt != nil {
		return alt
	}
	return b
}

// hedgeRoom reports whether a hedge could start now: the hedge budget has
// room and the model grants a spare slot (taken and given back at once;
// the hedge, if one follows, asks again).
func (f *Forwarder) hedgeRoom(in *Request) bool {
	if !f.opt.Hedges.take() {
		return false
	}
	f.opt.Hedges.give()
	if in.HedgeSlot == nil {
		return true
	}
	release, ok := in.HedgeSlot(func() {})
	if ok {
		release()
	}
	return ok
}

// after is the hedge delay's channel: Options.After, else a runtime timer
// (collected once unreferenced, so a race that ends first leaks nothing).
func (f *Forwarder) after(d time.Duration) <-chan time.Time {
	if f.opt.After != nil {
		return f.opt.After(d)
	}
	return time.After(d)
}

// startHedge admits a hedge on a backend not tried yet, or returns nil and
// why not: no attempt left or the hedge budget spent, the deadline passed,
// no spare slot in the model's queue, no backend with a free slot.
func (f *Forwarder) startHedge(ctx context.Context, in *Request, sel Selector, tried *[]*endpoint.Backend,
	deadline time.Time, res *Result) (*leg, HedgeOutcome) {
	now := f.opt.Now()
	if res.Attempts >= f.opt.Attempts || !now.Before(deadline) {
		return nil, HedgeNoBudget
	}
	if !f.opt.Hedges.take() {
		return nil, HedgeNoBudget
	}
	h := &leg{sent: now, hedge: true}
	h.actx, h.cancel = context.WithCancelCause(ctx)
	if in.HedgeSlot != nil {
		slot := &spareSlot{}
		slot.holder.Store(h)
		release, ok := in.HedgeSlot(slot.preempt)
		if !ok {
			f.opt.Hedges.give()
			h.cancel(nil)
			return nil, HedgeNoCapacity
		}
		slot.release, h.slot = release, slot
	}
	b, _ := sel.Select(*tried)
	if b != nil && !acquire(sel, b) {
		b = nil
	}
	var done breaker.Done
	if b != nil {
		d, ok := b.AllowCall(now)
		if !ok {
			b.Abandon()
			b = nil
		}
		done = d
	}
	if b == nil {
		f.opt.Hedges.give()
		h.slot.free()
		h.cancel(nil)
		return nil, HedgeNoCapacity
	}
	*tried = append(*tried, b)
	res.Attempts++
	res.Retries++
	h.c = call{b: b, done: done, work: in.Work, prompt: in.PromptTokens, kvNeed: in.KVNeed, waiting: true, busyEpoch: b.BusyEpoch()}
	b.AddWork(h.c.work)
	b.StartWaitingOf(now, h.c.wait())
	endWithBackend(h.actx, b, h.cancel)
	h.wd = startWatchdog(f.opt.Timeouts.FirstByte, in.FirstToken, deadline, f.opt.Now(), f.opt.Now, f.opt.AfterFunc, h.cancel)
	return h, HedgeNone
}
