package forecast

import (
	"fmt"
	"sync"
	"time"
)

// Key names a series: a model's total (Tenant "") or one tenant's share.
type Key struct {
	Model, Tenant string
}

// Estimate is a forecast rate (per second): its mean and a 90th percentile
// upper bound, the one to provision for.
type Estimate struct {
	Mean, P90 float64
}

// Forecast is the forecast arrival rate of one series.
type Forecast struct {
	Requests Estimate // requests per second
	Tokens   Estimate // tokens (prompt + completion) per second
}

// Forecaster counts arrivals per interval and keeps one model per series.
// It is safe for concurrent use. Time comes from the caller: Observe and
// Advance close the intervals that ended before the time they are given.
// The zero value is not usable; build it with New.
type Forecaster struct {
	cfg      Config
	k        coeffs
	horizons []int

	mu      sync.Mutex
	start   time.Time   // start of the open interval; zero before any time was seen
	end     IntervalEnd // start + Interval
	resumed bool        // restored from a snapshot: intervals since it are unknown
	open    map[Key]*tally
	// recent remembers the open tallies the last arrival counted into
	// (its model's, its tenant's): a burst from one caller finds them by
	// comparing two strings instead of hashing a struct key per lookup.
	// Valid while their entries are in open: clearOpen forgets them.
	recent   [2]recentTally
	series   map[Key]*pair
	splits   map[string]*split // per model with tenant series (split.go)
	splitGen uint64            // chooseLeads' pass number
	room     roomStats         // what the MaxSeries bound turned away (room.go)
	// services is carried through the snapshot for the scaling signal
	// (service.go).
	services map[string]ServiceRate
}

type recentTally struct {
	key Key
	tl  *tally
}

type tally struct{ requests, tokens float64 }

type pair struct{ requests, tokens *model }

// New returns a Forecaster for cfg (its zero fields take their defaults).
func New(cfg Config) (*Forecaster, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("forecast: %w", err)
	}
	return &Forecaster{cfg: cfg, k: newCoeffs(cfg), horizons: cfg.trackedHorizons(),
		open: map[Key]*tally{}, series: map[Key]*pair{}, splits: map[string]*split{}}, nil
}

// Config returns the configuration in use, defaults filled in.
func (f *Forecaster) Config() Config { return f.cfg }

// Observe counts requests and tokens that arrived at t for key's model
// and, if the tenant is busy enough to be forecast on its own, for key.
func (f *Forecaster) Observe(t time.Time, key Key, requests, tokens float64) {
	f.ObserveUntil(t, key, requests, tokens)
}

// ObserveUntil is Observe, and returns the end of the open interval
// after the count (zero when the arrival was not counted, or before any
// time was seen): Observe for a time before it counts into the open
// interval and closes none. A caller may sum arrivals before it and
// observe them as one while nothing else advances the forecaster (app's
// forecastRun). Read under the count's own lock: a separate call would
// take the lock once more for every arrival that starts a new sum, which
// is almost every arrival when tenants interleave (many clients).
func (f *Forecaster) ObserveUntil(t time.Time, key Key, requests, tokens float64) time.Time {
	// A name longer than a snapshot keeps is not forecast: its series
	// would make every snapshot unreadable.
	if key.Model == "" || len(key.Model) > maxNameLen || !(requests >= 0) || !(tokens >= 0) {
		return time.Time{}
	}
	f.mu.Lock()
	f.advance(t)
	f.add(&f.recent[0], Key{Model: key.Model}, requests, tokens)
	if key.Tenant != "" && len(key.Tenant) <= maxNameLen && f.cfg.MinTenantRate >= 0 {
		f.add(&f.recent[1], key, requests, tokens)
	}
	end := f.end.End(f.start, f.cfg.Interval)
	f.mu.Unlock() // not deferred: this runs on every request
	return end
}

// add counts into key's tally, found through recent when the last
// arrival counted into it too. Tallies for keys without a series are kept
// only while there is room, so that arbitrary names cannot grow memory.
func (f *Forecaster) add(recent *recentTally, key Key, requests, tokens float64) {
	tl := recent.tl
	if tl == nil || recent.key != key {
		if tl = f.open[key]; tl == nil {
			if _, ok := f.series[key]; !ok && !f.openRoom(key) {
				return
			}
			tl = &tally{}
			f.open[key] = tl
		}
		*recent = recentTally{key: key, tl: tl}
	}
	tl.requests += requests
	tl.tokens += tokens
}

// clearOpen starts an empty open interval: no tallies, none remembered.
func (f *Forecaster) clearOpen() {
	clear(f.open)
	f.recent = [2]recentTally{}
}

// Advance closes every interval that ended at or before t. Call it at
// least once per interval (a ticker) so that intervals without arrivals
// count as zero.
func (f *Forecaster) Advance(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rewind(t)
	f.advance(t)
}

// maxClockBack is how far before the open interval a time given to
// Advance may fall and still be taken for a late call rather than a clock
// stepped back.
const maxClockBack = SlotWidth

// rewind moves the open interval back to t when t is more than
// maxClockBack (or two intervals) before it: the wall clock was stepped
// back, or the snapshot restored was written by a clock running ahead.
// Without it no interval closes until the clock catches up again, and the
// forecast stays frozen on the old state for as long as the step (a year,
// for a snapshot from a clock a year ahead) while every arrival piles into
// the one open tally. The intervals between are unknown, as after a
// restart; the forecasts in flight are dropped, since their targets moved.
// Only Advance rewinds (the ticker's time, once per interval): an
// arrival's time is the request's start, which may lag.
func (f *Forecaster) rewind(t time.Time) {
	if f.start.IsZero() || !t.Before(f.start.Add(-max(maxClockBack, 2*f.cfg.Interval))) {
		return
	}
	for _, p := range f.allSeries() {
		p.requests.skip(0, f.k.maxGapSteps)
		p.tokens.skip(0, f.k.maxGapSteps)
	}
	f.clearOpen()
	f.start, f.resumed = t.Truncate(f.cfg.Interval), false
}

// liveTickSlack is how many silent intervals a live forecaster still counts
// as zeros when a call comes late: the ticker is not aligned with the
// interval boundaries and may be delayed by a busy machine, so one tick
// can close two intervals.
const liveTickSlack = 2

func (f *Forecaster) advance(t time.Time) {
	iv := f.cfg.Interval
	if f.start.IsZero() {
		f.start = t.Truncate(iv)
		return
	}
	if f.end.Before(t, f.start, iv) {
		return
	}
	n := int64(t.Sub(f.start) / iv)
	if n <= 0 {
		return
	}
	if f.resumed {
		// Restored from a snapshot: the intervals since are unknown.
		f.resumed = false
		f.skip(n)
		return
	}
	// Intervals with no call at all are zeros, unless there are more of
	// them than a gap may last: then the process was paused or the clock
	// jumped, and they are unknown. A live gateway calls Advance from a
	// ticker every interval even when idle, so more than liveTickSlack
	// intervals without a call means the process did not run (SIGSTOP, a
	// VM paused or migrated, a clock step): its own pause is not demand
	// going to zero, however short. The interval open when it stopped is
	// unknown too: its tally holds only what came before the pause (none
	// if the pause began at its start), and closing it put that
	// shortfall, a zero, in as the last value, which the naive, the shape
	// and the LAD forecasts carry: at the first tick after the pause the
	// forecast read half the level (TestLivePauseIsUnknownNotZero).
	limit := int64(max(f.k.maxGapSteps, 10))
	if f.k.live {
		limit = liveTickSlack
	}
	if rest := n - 1; rest > limit {
		f.skip(n)
		return
	}
	for range n {
		f.closeInterval()
	}
}

// IntervalEnd is the end of an interval, start + its length, remembered
// for the start it was worked out for: almost every arrival falls before
// the open interval's end, and comparing t with the end costs one
// comparison where t.Sub(start) would take Sub's wall-clock path (start
// has no monotonic reading: Truncate drops it), an Add and an Equal more,
// on every arrival. Wall clock either way. The zero value is ready.
type IntervalEnd struct{ end, of time.Time }

// Before reports whether t falls before start + length, working the end
// out again only when start has moved since the last call.
func (e *IntervalEnd) Before(t, start time.Time, length time.Duration) bool {
	return t.Before(e.End(start, length))
}

// End is start + length (the remembered one when start has not moved).
func (e *IntervalEnd) End(start time.Time, length time.Duration) time.Time {
	if e.of != start {
		e.end, e.of = start.Add(length), start
	}
	return e.end
}

// skip moves past n intervals whose traffic is unknown.
func (f *Forecaster) skip(n int64) {
	for _, p := range f.allSeries() {
		p.requests.skip(int(min(n, 1<<30)), f.k.maxGapSteps)
		p.tokens.skip(int(min(n, 1<<30)), f.k.maxGapSteps)
	}
	f.clearOpen()
	f.start = f.start.Add(time.Duration(n) * f.cfg.Interval)
}

// closeInterval turns the open interval's tallies into rates and updates
// every series with them (zero for a series that saw nothing).
func (f *Forecaster) closeInterval() {
	secs := f.cfg.Interval.Seconds()
	at, iv := f.start.Unix(), int64(f.cfg.Interval/time.Second)
	for _, tenants := range []bool{false, true} { // models first: they need no tenant's place
		for key, tl := range f.open {
			if _, ok := f.series[key]; ok || (key.Tenant != "") != tenants {
				continue
			}
			if key.Tenant != "" && tl.requests/secs < f.cfg.MinTenantRate {
				continue
			}
			if len(f.series) >= f.cfg.MaxSeries && !f.makeRoom(key, secs) {
				continue
			}
			f.series[key] = &pair{requests: newModel(f.horizons), tokens: newModel(f.horizons)}
		}
	}
	for key, p := range f.series {
		var tl tally
		if t := f.open[key]; t != nil {
			tl = *t
		}
		p.requests.update(&f.k, at, iv, tl.requests/secs)
		p.tokens.update(&f.k, at, iv, tl.tokens/secs)
	}
	f.updateSplits(at, iv, secs)
	f.clearOpen()
	f.start = f.start.Add(f.cfg.Interval)
}

// Forecast is key's forecast for the interval h from now (the interval
// that starts h after the last closed one started; h is rounded up to
// whole intervals and capped at MaxHorizon). ok is false for a key without
// a series or with no data yet.
func (f *Forecaster) Forecast(key Key, h time.Duration) (fc Forecast, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.series[key]
	if p == nil || !p.requests.started {
		return Forecast{}, false
	}
	steps := min(f.cfg.steps(h), f.cfg.steps(f.cfg.MaxHorizon))
	target := f.start.Add(time.Duration(steps-1) * f.cfg.Interval).Unix()
	fc.Requests.Mean, fc.Requests.P90 = p.requests.forecast(&f.k, steps, target)
	fc.Tokens.Mean, fc.Tokens.P90 = p.tokens.forecast(&f.k, steps, target)
	if key.Tenant == "" {
		fc.Requests.Mean = f.splitForecast(key.Model, p.requests, func(q *pair) *model { return q.requests }, steps, target, fc.Requests.Mean)
		fc.Tokens.Mean = f.splitForecast(key.Model, p.tokens, func(q *pair) *model { return q.tokens }, steps, target, fc.Tokens.Mean)
		fc.Requests.P90 = p.requests.p90Of(steps, fc.Requests.Mean)
		fc.Tokens.P90 = p.tokens.p90Of(steps, fc.Tokens.Mean)
	}
	return fc, true
}

// Keys lists the series being forecast, in no particular order.
func (f *Forecaster) Keys() []Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]Key, 0, len(f.series))
	for k := range f.series {
		keys = append(keys, k)
	}
	return keys
}

// allSeries is every series' pair, the splits' rest series included.
func (f *Forecaster) allSeries() []*pair {
	ps := make([]*pair, 0, len(f.series)+len(f.splits))
	for _, p := range f.series {
		ps = append(ps, p)
	}
	for _, s := range f.splits {
		ps = append(ps, s.rest)
	}
	return ps
}

// slotOfUnix is the weekly 10-minute slot of unix second sec (weeks
// counted from the Unix epoch, in UTC).
func slotOfUnix(sec int64) int {
	s := sec % int64(7*24*3600)
	if s < 0 {
		s += 7 * 24 * 3600
	}
	return int(s / int64(SlotWidth/time.Second))
}
