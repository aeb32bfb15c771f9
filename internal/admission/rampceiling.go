package admission

import "math"

// On adaptive limits nothing the queue sees proves slots a cold pool has
// not yet used: the ramp's base is the pool's recent peak, the memory of
// prompt starts (rampproven.go) holds only what the engines started
// before, and probes go only beside tenants owed no margin. So a fresh
// gateway held a newcomer's parallel streams beside a tenant on two slots
// for a round trip of its first answer: A on two long streams, B's five
// refused 503 at 2.8 s (interactive) or held 34-36 s (batch) with 3 of the
// engine's 16 slots in use (docs/RELIABILITY.md, branch ramp6).
//
// Some engines report the bound of their running batch in their metrics
// (SGLang's sglang:max_running_requests, the simulator's sluice_sim_slots),
// which the gateway scrapes. Less what other clients run or queue there,
// and only from a fresh reading, none while the engine queues in two
// readings in a row (an engine that queues is full, whatever its bound:
// its KV cache can fill first; one reading's queue is most often requests
// in transit to its next step), that bound is the most the engines can
// start for this pool now: QueueConfig.ReportedCapacity. Never more than
// the engine's KV cache holds, by its reported usage over its running
// sequences (endpoint's kvroom.go): free slots in a full cache are no room.
// An engine that reports no bound (vLLM) gives that KV room alone, once
// enough sequences run to estimate their footprint.
//
// It is a ceiling, not proof: it stands where the memory of prompt starts
// stands in provenBase, so a ramping tenant's free slots may reach it less
// every other active tenant's margin above its recent peak (rampMargin),
// and the allowance is still reckoned from the recent base. It is never
// known capacity (KnownCapacity): the others' margins stay theirs, and a
// bound that overstates what the engine's KV cache holds costs at most the
// newcomer's streams a wait inside the engine, which the next scrapes show
// (waiting in two in a row: no room there, the memory and the recent base
// again). A probe
// never goes past it: the engine said it starts no more.

// reportedSlots is the engines' reported room for the pool's requests of
// need tokens each (QueueConfig.ReportedCapacity); ok is false when none
// is reported now. A room of 0 reported is a ceiling of 0: read as none
// (branch kvexact), it let the memory of prompt starts and probes send a
// newcomer the engines had said they had no room for (branch kvneed). A
// short request beside long-prompted work fits where a long one does not,
// so the ramp asks for each request's own cost (branch kvexact); the stats
// show the room for the latest one asked.
func (q *Queue) reportedSlots(need float64) (room int, ok bool) {
	if q.cfg.ReportedCapacity == nil {
		return 0, false
	}
	if need > 0 {
		q.rampNeed = need
	}
	room, ok = q.cfg.ReportedCapacity(need)
	return max(room, 0), ok
}

// kvNeed is the request's KVNeed, or its Cost when it has none, rounded
// up to a step of kvNeedSteps per doubling.
func (r Request) kvNeed() float64 {
	need := r.Cost
	if r.KVNeed > 0 && !math.IsInf(r.KVNeed, 0) {
		need = min(r.KVNeed, need)
	}
	if !(need > 1) {
		return 1
	}
	return roundNeed(need)
}

// roundNeed is tokens rounded up to a step of kvNeedSteps per doubling;
// 0 for none or an unknown count (<= 0, NaN, infinite).
func roundNeed(tokens float64) float64 {
	if !(tokens > 0) || math.IsInf(tokens, 0) {
		return 0
	}
	return min(math.Exp2(math.Ceil(math.Log2(tokens)*kvNeedSteps)/kvNeedSteps), MaxCost)
}

// kvNeedSteps is how finely the ramp tells requests' KV needs apart: each
// distinct need is a call of ReportedCapacity (every backend's reading)
// when the parked waiters are looked at (unparkFreed, at every grant and
// release), which with a thousand waiters of a thousand prompt lengths
// took 400 µs a look under the queue's lock, against 73 µs for one need
// (branch review22). Rounded up to 8 steps per doubling (at most 9% more
// than the estimate, itself rough: bytes/4), a thousand needs between 100
// and 1,100 tokens are 28.
const kvNeedSteps = 8
