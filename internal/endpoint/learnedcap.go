package endpoint

// Slots learned from an engine that reports no batch bound (vLLM, whose
// max_num_seqs is in no metric; llama.cpp) cap the limit at those slots
// plus the same handover as a reported bound (an eighth, rounded up),
// where before they capped it at the slots exactly. The reason is the
// bound's (handover): a slot frees when the engine ends a sequence and is
// counted free here only once the stream's end was relayed, and the next
// request still travels and waits for the engine's next step. Capped at
// the 16 learned slots exactly, a pool of simulators showing only vLLM's
// gauges idled 3.6 of its 48 slots while requests queued in the gateway
// at 4x load (docs/BENCHMARKS.md §8, branch vllmwait), as a reported bound
// capped exactly had (§7f). The handover is also the probe for a larger
// batch: an engine with more slots than learned runs the extra requests
// (running > slots, learned at once), so no probe past the learned slots
// waits for its backoff. Slots learned below a reported bound (a KV cache
// that fills first) keep the exact cap and its probes, as before.

// smallerBatchReadings is how many readings in a row must show requests
// waiting behind a batch smaller than the learned slots before the slots
// are learned again from those batches (smallerBatch).
const smallerBatchReadings = 3

// smallerBatch learns the slots again, lower, when the engine keeps a
// queue behind a batch smaller than the slots learned: restarted with a
// smaller max_num_seqs, or its KV cache now fills before its slots (longer
// sequences; vLLM preempts sequences back to its queue then). The rule
// that learns slots asks for a batch at least as large as any seen before
// (the peak), so without this the old slots and peak held: an engine
// restarted from 16 slots to 8 kept a cap of 16 plus the handover, and the
// 10 past its 8 waited in its own queue, out of the gateway's order and
// deadlines. A request in transit shows as waiting until the engine's next
// step, so a reading or two with a smaller batch and a queue prove
// nothing; smallerBatchReadings in a row, each fresh when the next came
// (inARow) and none larger than the one before, do, and the largest of their batches is the new slots (and
// peak). The cap then grows back as any learned slots do: the handover
// lets a larger batch run, and one that runs is learned.
func (c *scrapedCap) smallerBatch(running, waiting int, inARow bool) {
	if c.slots == 0 || waiting == 0 || running == 0 || running >= c.slots {
		c.short, c.shortMax = 0, 0
		return
	}
	if !inARow || c.short > 0 && running > c.running {
		// Not in a row, or the batch grew since the last reading (c.running
		// is still that reading's): a batch that grows while requests wait
		// was not full, they waited for the engine's next step
		// (queuedButGrowing). Without this, an engine at 16 slots taking a
		// burst in batches of 4, 6 and 9, a request in transit beside each,
		// was learned at 9 slots (review of vllmwait, docs/RELIABILITY.md).
		c.short, c.shortMax = 0, 0
	}
	c.short++
	c.shortMax = max(c.shortMax, running)
	if c.short < smallerBatchReadings {
		return
	}
	c.slots, c.peak = c.shortMax, c.shortMax
	c.short, c.shortMax = 0, 0
}
