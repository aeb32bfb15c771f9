package forecast

// The series table holds at most MaxSeries series, and tenants are named
// by clients (API keys, token claims, client addresses): the bound must
// not let early or past tenants keep a model from being forecast, nor
// keep a busy tenant out for good. So a model always gets a series, in
// place of the least busy tenant's if the table is full; a tenant busy
// enough for one takes the place of a tenant that has gone quiet (below
// MinTenantRate in the interval closing); otherwise it is turned away,
// and counted.

// roomStats counts what the bound did; guarded by the Forecaster's mu.
type roomStats struct {
	evicted, refused uint64
}

// SeriesStats is the series table against its bound.
type SeriesStats struct {
	Models, Tenants int // series held now
	Max             int // MaxSeries
	// Evicted counts tenant series given up for a model or a busier
	// tenant; Refused counts keys that qualified for a series and found
	// no room (at most one per key per interval).
	Evicted, Refused uint64
}

// SeriesStats returns the series table's fill and what its bound did.
func (f *Forecaster) SeriesStats() SeriesStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := SeriesStats{Max: f.cfg.MaxSeries, Evicted: f.room.evicted, Refused: f.room.refused}
	for k := range f.series {
		if k.Tenant == "" {
			st.Models++
		} else {
			st.Tenants++
		}
	}
	return st
}

// openRoom reports whether a key without a series may start a tally in
// the open interval: tenants while the tallies are fewer than 4 x
// MaxSeries, models beyond that up to 5 x (the caller passes only
// configured models, so they are few; a flood of tenant names must not
// keep a model's arrivals from being counted).
func (f *Forecaster) openRoom(key Key) bool {
	n := len(f.open)
	return n < 4*f.cfg.MaxSeries || key.Tenant == "" && n < 5*f.cfg.MaxSeries
}

// makeRoom frees a place in the full series table for key, which
// qualifies for one, by giving up a tenant's series: for a model, the
// tenant that sent least in the interval closing; for a tenant, one that
// sent less than MinTenantRate. It reports whether it did.
func (f *Forecaster) makeRoom(key Key, secs float64) bool {
	var victim Key
	found, low := false, 0.0
	for k := range f.series {
		if k.Tenant == "" {
			continue
		}
		var rate float64
		if tl := f.open[k]; tl != nil {
			rate = tl.requests / secs
		}
		if key.Tenant != "" && rate >= f.cfg.MinTenantRate {
			continue
		}
		if !found || rate < low {
			victim, low, found = k, rate, true
		}
	}
	if !found {
		f.room.refused++
		return false
	}
	delete(f.series, victim)
	f.room.evicted++
	return true
}
