package endpoint

// YieldSlot hands the slot of one of the backend's in-flight requests to
// the next request before that one has ended: its stream is a step or two
// from its last token (proxy's near-end hand-off), the engine frees the
// slot as it computes that token, and the next request, dispatched now,
// arrives about when the slot is free instead of a gateway round trip
// later. Every YieldSlot is paired with a ReclaimSlot by the same request
// just before its Release, so the counts stay balanced.
func (b *Backend) YieldSlot() {
	b.inflight.Add(-1)
	b.signalFreed()
}

// ReclaimSlot takes back a slot given up by YieldSlot, for the request's
// Release (or ReleaseFed) to give it up for good.
func (b *Backend) ReclaimSlot() { b.inflight.Add(1) }
