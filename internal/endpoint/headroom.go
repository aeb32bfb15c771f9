package endpoint

import (
	"math"
	"time"
)

// scrapedCap is the concurrency a backend's own metrics allow this
// gateway: what it runs now plus what it can still start, never more
// (issue 10 §3). The adaptive limit learns from latency, and a batching
// engine's latency hardly moves while requests wait in its own queue behind
// a full batch, so without this the limit settles past the backend's real
// slots and the overflow waits inside the backend, out of the gateway's
// fair queue and deadlines.
type scrapedCap struct {
	limit   int       // in-flight requests this gateway may have there
	slots   int       // learned batch size; 0 while the backend never queued
	bound   int       // the batch bound the engine reports (Load.BatchBound); 0: none
	seen    int       // the last bound reported, kept through readings with none
	peak    int       // the most requests it was ever seen running
	queued  bool      // the last reading showed a queue behind its largest batch
	running int       // the last reading's running requests
	expires time.Time // the reading's expiry: an older cap is not applied
	now     func() time.Time
	// slotLimit is limit without the handover past the batch bound: the
	// requests of this gateway the engine runs at once, which queued jobs
	// may fill (SlotLimitAmong); no more than limit.
	slotLimit int
	// probing: the cap in force is one over what the slots allow, to find
	// a larger batch; probeAt and backoff space the probes out after one
	// that found the batch full (see ObserveLoad).
	probing bool
	probeAt time.Time
	backoff time.Duration
	// short and shortMax: readings in a row, each fresh when the next
	// came, with a queue behind a batch smaller than the learned slots,
	// and the largest of those batches (smallerBatch).
	short, shortMax int
}

// The first probe beyond slots just learned waits firstProbeBackoff (they
// were learned from a full batch, most often in a burst); after a probe
// that found no larger batch the next waits twice as long, up to
// maxProbeBackoff; one that found room lets the next come at once. A probe
// into a full batch costs one request a wait inside the backend, out of
// the gateway's queue and deadlines: spaced out like this it is a handful
// per backend per hour instead of one per scrape interval, which set the
// demo's p99 time to first token.
const (
	firstProbeBackoff = 30 * time.Second
	maxProbeBackoff   = 5 * time.Minute
)

// ObserveLoad stores a scraped snapshot, as SetLoad, and caps the
// backend's concurrency limit (Limit) by what the snapshot says the
// backend can start, until l.Expires on now's clock. The scraper is its
// only caller.
//
// The backend's slot count is learned, not configured: a backend that
// queues (Waiting > 0) in two readings in a row with its batch as large
// as it was ever seen, and no larger in the second than in the first, runs
// as many requests as it can, so Running is its batch size now (slots or
// KV cache bound it); one that runs more than that has grown its batch. A single reading with a queue proves nothing
// (a request that arrived since the engine's last step waits too) unless
// this gateway saw the backlog itself (backlogBound) and the reading holds
// more than that backlog's guess plus the one request it lets past the
// guess (which a reading may catch waiting for the engine's next step
// whatever the true slots are). An engine that reports its batch bound
// (Load.BatchBound) has it as its slots from the first reading, or the
// learned slots where fewer (reportedBound). Until one of these is known,
// nothing is capped. A reported bound, and slots learned from an engine
// that reports none, count an eighth more (handover; learnedcap.go); a
// queue behind a smaller batch in smallerBatchReadings readings in a row
// learns the slots again, lower (smallerBatch). With the slots known, and
// D = Running + Waiting the backend's demand from every client:
//
//	D >= slots: cap = mine × slots / D   (at least 1)
//	D <  slots: cap = mine + slots − D
//
// where mine is this gateway's in-flight count when the backend answered
// the scrape (InflightAtScrape). While the backend queues nothing the cap
// is at least mine + 1, so a slot count learned too low grows back; after
// such a probe found no larger batch, the next one waits (probeAt). Gateway
// replicas sharing a backend each see the same D, so in a backend that
// queues each gets its own share of its slots, and the caps add up to the
// slots, not to the replicas times the slots. The room of a backend with
// free slots is offered to every replica at once, so they may overfill it
// by that room, once: the next scrape shows the queue and scales them back.
func (b *Backend) ObserveLoad(l Load, now func() time.Time) {
	b.SetLoad(l)
	running := int(math.Round(l.Running))
	waiting := int(math.Round(l.Waiting))
	b.mu.Lock()
	defer b.mu.Unlock()
	var c scrapedCap
	if old := b.capRec.Load(); old != nil {
		c = *old
	}
	if bound := reportedBound(l); c.seen > 0 && bound > 0 && bound != c.seen {
		// The engine came back with another bound (restarted with another
		// max_running_requests): what was learned under the old one is no
		// evidence now. Kept, slots learned at the old 16 held an engine
		// restarted at 32 below 16, growing back one probe per scrape, and
		// the peak of an engine restarted smaller kept a batch filled by
		// its KV cache below the new bound from ever being learned. The
		// last bound seen, not the last reading's: an engine starting up
		// may answer with no bound (or 0) before it reports the new one.
		c = scrapedCap{}
		b.localSlots.Store(0)
	}
	// The last reading is this one's predecessor only if it was still
	// fresh when this one came: a queue seen before the scrapes failed
	// for a while and one seen now are no evidence of one full batch.
	inARow := !l.At.IsZero() && l.At.Before(c.expires)
	c.expires, c.now = l.Expires, now
	c.peak = max(c.peak, running)
	queued := waiting > 0 && running > 0 && running >= c.peak
	c.queued = c.queued && inARow
	// One reading confirms the backlog this gateway saw (backlogBound) only
	// if the backend holds more than that bound's guess plus the one
	// request it lets past the guess. A guess learned from a stall of the
	// whole machine (a CPU-starved gateway reads first tokens late, so
	// fewer streams look started than the engine runs) holds the backend
	// at guess + 1; a reading then shows that extra request waiting for
	// the engine's next step, which proves nothing, and confirming the
	// guess kept a backend one to three slots short for a whole probe
	// backoff (docs/BENCHMARKS.md §13, "Under CPU load").
	local := int(b.localSlots.Load())
	confirmsLocal := local > 0 && running+waiting > local+1
	grew := false
	switch {
	case queued && (c.queued && running <= c.running || confirmsLocal):
		// Two readings in a row with a queue and a batch that did not
		// grow between them, or one that confirms the backlog this
		// gateway saw itself (backlogBound): the batch is full. A batch
		// that grew while requests waited was not full: they waited for
		// the engine's next step (queuedButGrowing).
		if c.slots == 0 {
			// Just learned, from a full batch: the first probe past
			// it waits too, or it lands in the burst that filled it.
			c.backoff, c.probeAt = firstProbeBackoff, now().Add(firstProbeBackoff)
		}
		c.slots = running
	case c.slots > 0 && running > c.slots:
		c.slots, grew = running, true
		c.backoff, c.probeAt = 0, time.Time{} // a probe found room: probe again freely
	}
	c.smallerBatch(running, waiting, inARow)
	at := now()
	if c.probing && !grew {
		// The probe had its scrape interval and found no larger batch
		// (a larger one would have grown the slots above). A scrape
		// cannot tell whether the extra request waited: one that waited
		// less than an interval, while the batch freed a slot, leaves no
		// queue to see. So the next probe waits, whatever this one showed.
		c.backoff = min(max(2*c.backoff, firstProbeBackoff), maxProbeBackoff)
		c.probeAt = at.Add(c.backoff)
	}
	c.queued, c.running, c.probing = queued, running, false
	c.bound = reportedBound(l)
	if c.bound > 0 {
		c.seen = c.bound
	}
	c.limit, c.slotLimit = 0, 0
	switch slots := c.known(); {
	case slots > 0:
		mine := int(l.InflightAtScrape)
		// The slots the engine runs at once, before the handover: what
		// queued jobs may fill (SlotLimitAmong).
		c.slotLimit = capFor(mine, slots, running+waiting)
		if c.bound == 0 || slots == c.bound {
			// The bound the engine reports, or slots learned from an
			// engine that reports none (vLLM, llama.cpp), get the
			// handover (learnedcap.go).
			slots += handover(slots)
		}
		c.limit = capFor(mine, slots, running+waiting)
		// A probe looks for a batch larger than the one learned; never
		// past the bound the engine reports: it said it runs no more.
		if waiting == 0 && mine+1 > c.limit && !at.Before(c.probeAt) &&
			(c.bound == 0 || mine+1 <= capFor(mine, c.bound, running+waiting)) {
			c.limit, c.probing = mine+1, true
		}
	case waiting > 0 && running == 0 && c.peak > 0:
		// Queueing with nothing running (stalled, or every request
		// preempted) though it has run before: it starts nothing now.
		// One request keeps a reading of its first token coming.
		c.limit = 1
	}
	c.slotLimit = min(c.slotLimit, c.limit)
	b.capRec.Store(&c)
}

// queuedButGrowing: an engine takes new sequences only at a step
// boundary, so a request sent since its last step shows as waiting however
// many slots are free. With a step as long as the scrape interval (the
// simulator at a 1 s step) and a limit stepping up, every reading caught
// the latest step's requests waiting next to a batch at its largest yet,
// two such readings in a row read as a full batch, and the batch learned
// (20 of 2,048 slots) then held the gateway for minutes, growing by one
// request per probe. A full batch cannot grow, so the second reading must
// show no more running than the first; a saturated engine shows the same
// batch in both and is learned as soon as before.

// The batch bound an engine reports (SGLang's max_running_requests, the
// simulator's slots) is slots known from the first reading, with no need
// to see the engine queue first; the cap is the bound and its handover. Learning them from a queue in two
// readings in a row left an engine at 0.7x of its capacity uncapped: its
// queue came and went between readings, so the adaptive limit, which a
// batching engine's latency hardly checks (its latency floor is a tenth of
// the objective), stood above the 16 slots, and the overflow waited in
// the engine's own queue, where admission's order and preemption cannot
// reach it. Interactive p99 time to first token was 127 ms alone and
// 347 ms beside a batch, against 66 and 77 ms with a static
// max_concurrency of 16 (docs/BENCHMARKS.md §7e-§7f). An engine that
// reports no bound keeps the learned slots alone, as before. Slots learned
// below the bound (a KV cache that fills first) stay in force.

// reportedBound is l's batch bound as an int; 0 when none is reported.
func reportedBound(l Load) int {
	if !(l.BatchBound >= 1) {
		return 0
	}
	return int(math.Round(min(l.BatchBound, maxReportedBound)))
}

// handover is how many requests past an engine's reported bound the cap
// lets this gateway have there (an eighth, rounded up): a slot frees when
// the engine ends a sequence and is counted free here only when its
// stream's end was relayed, and the next request then still travels and
// waits for the engine's next step. Capped at the bound exactly, the
// slots idled through those gaps under overload (2.2-3.6 of 48 while
// requests queued in the gateway, against 1.4-2.4 with the adaptive
// limit, and 10-24% fewer answers within the objective at 4x;
// docs/BENCHMARKS.md §7f); with the handover, 0.0-0.3.
func handover(slots int) int { return (slots + 7) / 8 }

// known is the slot count the cap is reckoned from: the learned slots, no
// more than the reported bound; the bound alone before any are learned.
func (c *scrapedCap) known() int {
	if c.bound > 0 && (c.slots == 0 || c.bound < c.slots) {
		return c.bound
	}
	return c.slots
}

// knownAt is known as evidence at now: the reported bound only from a
// fresh reading. A bound last read before the metrics went away (scrapes
// failing, the engine's metrics port gone) caps nothing then (capped), so
// it must not switch off what bounds a backend of unknown slots either:
// the backlog this gateway sees (backlogBound) and its peers' limits
// (LimitAmong). Slots learned from a queue keep counting, as before the
// bound was read.
func (c *scrapedCap) knownAt(now time.Time) int {
	if now.Before(c.expires) {
		return c.known()
	}
	return c.slots
}

// capFor is the in-flight bound for a gateway holding mine of a backend's
// demand, given its slots (see ObserveLoad). A demand below mine counts
// this gateway's requests still on their way to the engine, not a free
// slot: the demand is at least mine.
func capFor(mine, slots, demand int) int {
	demand = max(demand, mine)
	if demand >= slots {
		return max(1, int(math.Round(float64(mine)*float64(slots)/float64(demand))))
	}
	return mine + slots - demand
}

// ScrapedCap is the bound ObserveLoad set on the backend's in-flight
// requests, and its known slot count (learned, no more than the engine's
// reported bound; the bound alone before any are learned); cap is 0 when
// none applies now (no reading, a stale one, or a backend that never
// queued and reports no bound).
func (b *Backend) ScrapedCap() (limit, slots int) {
	c := b.capRec.Load()
	if c == nil {
		return 0, 0
	}
	if !c.now().Before(c.expires) {
		return 0, c.known()
	}
	return c.limit, c.known()
}

// SlotLimitAmong is LimitAmong(peer) without the handover past the
// engine's batch bound (reported, or slots learned: handover): the
// requests of this gateway the engine runs at once rather than queues. The
// handover keeps an engine fed across the gap between a sequence's end and
// the next request's start; the requests in it wait in the engine's own
// queue, where admission cannot reach them, so queued jobs may fill only
// up to this, and a live request granted past it takes a job's slot back
// (admission.QueueConfig.SpareCapacity). Equal to LimitAmong with no fresh
// reading, or no slots known.
func (b *Backend) SlotLimitAmong(peer float64) int {
	l := b.LimitAmong(peer)
	c := b.capRec.Load()
	if c == nil || c.slotLimit <= 0 || c.slotLimit >= c.limit || !c.now().Before(c.expires) {
		return l
	}
	if l <= 0 {
		return c.slotLimit
	}
	// A limit in force below the slots (the adaptive limit, a slow start)
	// runs all its requests: no handover to leave out.
	return min(l, c.slotLimit)
}

// capped applies the scraped cap, and the backlog bound, to a limit (0 =
// unlimited).
func (b *Backend) capped(limit int) int {
	c := b.capRec.Load()
	if c == nil {
		return limit
	}
	now := c.now()
	bound := 0
	if now.Before(c.expires) {
		bound = c.limit
	}
	if c.knownAt(now) == 0 {
		if n := b.backlogBound(now); n > 0 && (bound == 0 || n < bound) {
			bound = n
		}
	}
	switch {
	case bound <= 0:
		return limit
	case limit <= 0:
		return bound
	}
	return min(limit, bound)
}

// minBacklogWait is the shortest stall taken for a backlog: scheduling
// jitter on a loaded machine delays a first token by tens of milliseconds.
const minBacklogWait = 100 * time.Millisecond

// backlogBound bounds the in-flight requests of a backend whose slots are
// not known from its metrics yet (it never queued in two readings in a
// row), from what this gateway sees between two scrapes: streams sent and
// still without a first token, while none has started for
// max(2 x its typical time to first token, minBacklogWait)
// (Stalled), wait in the backend's own queue behind a full batch. The
// requests of this gateway that did start (in flight minus those waiting)
// are then its batch: that many are learned as its slots, and the backend
// is held there, sent nothing more until one ends. While no backlog shows,
// one more than the learned slots is allowed, so a guess too low (a stall
// from elsewhere) grows back as soon as a request starts beyond it. A scrape
// a second later finds the true batch and takes over (ObserveLoad); this
// bound only covers the time before, in which a burst admitted at once
// would otherwise fill the backend's queue with requests that wait there
// for whole generations.
func (b *Backend) backlogBound(now time.Time) int {
	stalled, waiting := b.stalledPast(now, false)
	started := int(b.inflight.Load()) - waiting
	learned := int(b.localSlots.Load())
	if stalled {
		if started > 0 && (learned == 0 || started < learned) {
			b.localSlots.Store(int64(started))
			learned = started
		}
		return max(learned, 1)
	}
	if learned == 0 {
		return 0
	}
	if started > learned {
		b.localSlots.CompareAndSwap(int64(learned), int64(started))
		learned = started
	}
	return learned + 1
}

// stalledPast reports whether a stream this gateway sent has waited for
// its first token past max(2 x the backend's typical time to first token,
// minBacklogWait) with none started since (Stalled), and how many streams
// wait. With ownStalls false the time this process itself stalled is not
// counted (StallWatch): for evidence that holds the backend whole
// (backlogBound), not for evidence that only withholds its reported room
// until the first token is read (StartsLate).
func (b *Backend) stalledPast(now time.Time, ownStalls bool) (stalled bool, waiting int) {
	b.mu.Lock()
	waiting = b.waiting
	var since time.Time
	wait := time.Duration(0)
	if waiting > 0 {
		since = b.waitSince
		if b.lastAnswer.After(since) {
			since = b.lastAnswer
		}
		wait = now.Sub(since)
	}
	typical := time.Duration(b.typical)
	b.mu.Unlock()
	bound := max(2*typical, minBacklogWait)
	if typical <= 0 || wait <= bound {
		return false, waiting
	}
	if ownStalls {
		return true, waiting
	}
	// The time this process itself stalled is no evidence: no first token
	// was read from any backend then (StallWatch).
	return now.Sub(b.stalls.Load().evidenceSince(since, now)) > bound, waiting
}
