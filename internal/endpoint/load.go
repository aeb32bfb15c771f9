package endpoint

import "time"

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
}

// Fresh reports whether l may still be trusted at now.
func (l Load) Fresh(now time.Time) bool {
	return !l.At.IsZero() && now.Before(l.Expires)
}

// SetLoad stores a new snapshot. The scraper is its only writer.
func (b *Backend) SetLoad(l Load) {
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
