package endpoint

import (
	"math"
	"time"
)

// Load is a backend's own account of its load, read from its metrics
// endpoint by the scraper. It is a snapshot: it says nothing about requests
// sent after At, which is why it carries InflightAtScrape (see least_load in
// package routing) and an expiry.
type Load struct {
	// Running and Waiting are the requests in the backend's batch and in
	// its queue, summed over every label set (all models, all engines). They
	// count every client's requests, not only this gateway's.
	Running, Waiting float64
	// KVCacheUsage is the fraction of the KV cache in use, 0..1; 0 when the
	// backend does not report it.
	KVCacheUsage float64
	// BatchBound is the most requests the backend's engine says it runs
	// at once (SGLang's max_running_requests, the simulator's slots),
	// summed over label sets as Running; 0 when it does not report one.
	BatchBound float64
	// KVCacheTokens is the size of the engine's KV cache in tokens, as it
	// reports it (vLLM's cache_config_info, SGLang's max_total_num_tokens,
	// the simulator's budget), summed over label sets; 0 when it does not.
	KVCacheTokens float64
	// At is when the scrape completed.
	At time.Time
	// Expires is when this snapshot stops being trusted (At plus the
	// scraper's StaleAfter). A failed scrape keeps the previous Load, so a
	// backend whose scrapes keep failing goes stale at Expires.
	Expires time.Time
	// InflightAtScrape is this gateway's Inflight() when the scrape's
	// response arrived. Inflight() minus it is what this gateway sent (or
	// finished) since the backend counted its queue.
	InflightAtScrape int64
	// WaitingAtScrape and WaitingKVAtScrape are this gateway's streams on
	// the backend still waiting for their first token when the scrape's
	// response arrived, and their KV need (Backend.WaitingStreams): of the
	// requests the engine reports waiting, up to that many are these, of
	// known size (kvTokenRoom).
	WaitingAtScrape   int64
	WaitingKVAtScrape int64
	// QueuedBefore: the reading before this one, still fresh when this one
	// came, also had requests waiting (SetLoad sets it). An engine holds a
	// request it was just sent as waiting until its next step (tens of
	// milliseconds), so one reading with a queue is often no more than
	// that; a queue in two readings in a row is one (ObserveLoad's rule).
	QueuedBefore bool
}

// Fresh reports whether l may still be trusted at now.
func (l Load) Fresh(now time.Time) bool {
	return !l.At.IsZero() && now.Before(l.Expires)
}

// SetLoad stores a new snapshot. The scraper is its only writer, so the
// snapshot it replaces is read here without a race.
func (b *Backend) SetLoad(l Load) {
	if prev := b.load.Load(); prev != nil && prev.Waiting >= 0.5 && prev.Fresh(l.At) {
		l.QueuedBefore = true
	}
	b.load.Store(&l)
}

// Load returns the last stored snapshot; ok is false before the first one.
// Callers must check Fresh before trusting it.
func (b *Backend) Load() (l Load, ok bool) {
	p := b.load.Load()
	if p == nil {
		return Load{}, false
	}
	return *p, true
}

// maxReportedBound caps a reported batch bound before it becomes an int:
// no engine runs a million requests at once, and a sentinel for
// "unlimited" (sys.maxsize, 1e30) would overflow int's range, whose
// conversion Go leaves to the implementation (the minimum int on amd64:
// no room, a ceiling of what is in flight), and a pool's sum of several.
const maxReportedBound = 1 << 20

// ReportedRoom is how many of this gateway's requests the backend's engine
// says it can run at once now: its reported batch bound less what other
// clients run or queue there (Running + Waiting beyond InflightAtScrape,
// this gateway's share when it answered), and none beyond its own
// requests there when its KV cache is full (kvRoom at kvFullUsage: an
// engine whose cache fills below its bound preempts or queues, so free
// slots are no room then; below full, the bound alone). An engine that
// reports no bound (vLLM) gets its KV room alone, where the reading can
// estimate it (enough sequences running, kvEstimateMinRunning). ok is
// false, and room means nothing, without a fresh reading (Fresh: a scrape
// older than the scraper's StaleAfter tells nothing of now), with neither
// a bound nor a KV estimate, or with requests waiting in two readings in
// a row: an engine that queues is full whatever its bound or cache say,
// so neither is room then. A queue in one reading alone is most often
// requests just sent that the engine takes at its next step: read as a
// queue, it took the whole ceiling away for a scrape interval and held a
// newcomer's burst (branch coldtest); its waiting requests count as
// others' (beyond this gateway's share), and an engine really full shows
// no room by the next reading.
// The tenant ramp takes the sum over a pool as a ceiling, never as known
// slots (admission.QueueConfig.ReportedCapacity).
//
// This is the room for newcomers like the running sequences; ReportedRoomFor
// counts a newcomer's own tokens where the engine reports its cache's size.
func (b *Backend) ReportedRoom(now time.Time) (room int, ok bool) {
	return b.ReportedRoomFor(now, 0)
}

// ReportedRoomFor is ReportedRoom for newcomers of need tokens each (the
// request's estimated prompt plus max_tokens): where the engine reports its
// KV cache's size (Load.KVCacheTokens) the KV room is the newcomers of that
// size its free tokens hold, at any usage (kvTokenRoom), in place of the
// estimate from the running sequences' footprint; need <= 0, or no size
// reported, keeps that estimate.
func (b *Backend) ReportedRoomFor(now time.Time, need float64) (room int, ok bool) {
	l, ok := b.Load()
	if !ok || !l.Fresh(now) || l.Waiting >= 0.5 && l.QueuedBefore {
		return 0, false
	}
	r, ok := l.boundRoom()
	kv, kvOK := l.kvTokenRoom(need)
	if !kvOK {
		kv, kvOK = l.kvRoom(ok)
	}
	switch {
	case !ok && !kvOK:
		return 0, false
	case !ok || kvOK && kv < r:
		r = kv
	}
	return int(max(r, 0)), true
}

// boundRoom is the reported batch bound less the others' requests; ok is
// false without a bound.
func (l Load) boundRoom() (room float64, ok bool) {
	if l.BatchBound < 1 {
		return 0, false
	}
	others := max(math.Round(l.Running+l.Waiting)-float64(l.InflightAtScrape), 0)
	return math.Round(min(l.BatchBound, maxReportedBound)) - others, true
}

// ReportsRoom reports whether the backend's engine accounts for its
// slots in a fresh reading, queueing or not: a batch bound, or a KV
// estimate (kvRoom), or the cache's size (kvTokenRoom: exact for any
// newcomer, idle or not); with one, its room is known (or it is full while it
// queues); without (an engine that exports neither, too few sequences
// running to estimate its KV, a stale or missing scrape) nothing says how
// many it has.
func (b *Backend) ReportsRoom(now time.Time) bool {
	l, ok := b.Load()
	if !ok || !l.Fresh(now) {
		return false
	}
	_, bound := l.boundRoom()
	_, kv := l.kvRoom(bound)
	return bound || kv || l.KVCacheTokens >= 1
}
