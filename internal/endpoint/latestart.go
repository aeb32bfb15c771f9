package endpoint

import "time"

// An engine that reports free slots and no queue can still start streams
// late: slow prefill (the sim stalls its running batch for a new prompt's
// prefill, and every stream sent after waits behind it; a real engine
// schedules prefill chunks first come, first served), KV thrashing, a
// machine slowed by load. Its reported room (ReportedRoom) then let a
// newcomer's burst in that the engine could not start in time: on a
// simulator prefilling 2,500 tokens/s, a newcomer's five 2,000-token
// prompts took 4 s of prefill, its five first tokens came 4.3 s after
// they were sent, and the established tenant's next two streams were
// refused 503 while its running two stalled 4 s (in half the runs; the
// KV room alone did the same). With this check the five are refused at
// their deadline and the tenant's two start in 0.02-0.19 s
// (docs/RELIABILITY.md, branch latebound). So the pool takes a
// backend that starts this gateway's streams late as full while it does
// (gateway.Pool.ReportedCapacity), as one that queues.
//
// Two kinds of evidence, both seen by this gateway:
//   - a stream waits for its first token past the prompt bound now
//     (stalledPast: 2 x the typical time to first token, at least
//     minBacklogWait): nothing says yet how long it will wait, and its
//     first token ends this at once. This process's own stalls count
//     here (unlike in backlogBound, which holds the whole backend): on a
//     machine at load 18-23 the discounted wait let a newcomer's five
//     long prompts past a stream stalled 0.5 s in one run of two, and a
//     stall of our own costs only a hold until the first token is read;
//   - a first token came later than after, the caller's bound (the pool's
//     interactive delay target: an engine that makes a stream wait as long
//     as the queue may make it wait spends the others' objective on every
//     stream sent to it), within a reading's trust (the Load's At to
//     Expires) before now. A late start shorter than that is not counted:
//     the late-start judge cannot tell a long prompt's prefill from a full
//     batch (ramp4's cut cannot either), and at 20,000 prefill tokens/s a
//     newcomer's 2,000-token prompt starts in 0.12 s, "late" beside
//     20 ms starts, while five more of them start in 0.5 s.

// StartsLate reports whether the engine starts this gateway's streams
// late now (see above): a stream waiting past the prompt bound, or a
// first token later than after within a reading's trust.
func (b *Backend) StartsLate(now time.Time, after time.Duration) bool {
	if stalled, _ := b.stalledPast(now, true); stalled {
		return true
	}
	l, ok := b.Load()
	if !ok {
		return false
	}
	b.mu.Lock()
	at, ttft := b.lateAt, b.lateTTFT
	b.mu.Unlock()
	return !at.IsZero() && ttft > after && now.Sub(at) < l.Expires.Sub(l.At)
}

// noteLateLocked records a first token past the prompt bound: the latest,
// unless a later one within a reading's trust came before it.
func (b *Backend) noteLateLocked(now time.Time, ttft time.Duration) {
	trust := time.Duration(0)
	if l, ok := b.Load(); ok {
		trust = l.Expires.Sub(l.At)
	}
	if ttft >= b.lateTTFT || now.Sub(b.lateAt) >= trust {
		b.lateAt, b.lateTTFT = now, ttft
	}
}
