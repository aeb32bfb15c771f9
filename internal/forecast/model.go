package forecast

import (
	"math"
	"time"
)

// baseHalfLife is the memory of the slow level that seasonal deviations
// are measured from: long enough not to follow a daily swing.
const baseHalfLife = 24 * time.Hour

// coeffs are Config's half-lives turned into per-interval smoothing
// constants, computed once.
type coeffs struct {
	alpha, beta, phi   float64 // level, slope, slope fade per interval
	baseRate           float64 // the slow base the profiles are relative to
	gammaDay, gammaWk  float64 // seasonal profiles, per update of a slot
	stepsPerDay        int
	updatesPerVisit    float64 // updates of a profile slot per day
	errRate            float64 // per-horizon error memory (the fast combination's)
	errHalfSteps       float64 // that memory's half-life in intervals
	qStep, gapFraction float64
	maxGapSteps        int
	live               bool    // Config.Live: a low value is never a gap
	iv                 int64   // the interval in seconds
	ladForget          float64 // the LAD fit's discount per point
}

func newCoeffs(c Config) coeffs {
	per := func(halfLife float64) float64 { return 1 - math.Exp2(-1/halfLife) } // halfLife in updates
	iv := float64(c.Interval)
	updatesPerSlotVisit := float64(SlotWidth) / iv
	return coeffs{
		alpha:           per(float64(c.LevelHalfLife) / iv),
		beta:            per(float64(c.TrendHalfLife) / iv),
		phi:             math.Exp2(-iv / float64(c.TrendFade)),
		baseRate:        per(float64(baseHalfLife) / iv),
		stepsPerDay:     int(24 * time.Hour / c.Interval),
		updatesPerVisit: updatesPerSlotVisit,
		gammaDay:        per(c.DailyHalfLife * updatesPerSlotVisit),
		gammaWk:         per(c.WeeklyHalfLife * updatesPerSlotVisit),
		errRate:         per(float64(c.ErrorHalfLife) / iv),
		errHalfSteps:    float64(c.ErrorHalfLife) / iv,
		qStep:           c.QuantileStep,
		gapFraction:     c.GapFraction,
		maxGapSteps:     int(c.MaxGap / c.Interval),
		live:            c.Live,
		iv:              int64(c.Interval / time.Second),
		ladForget:       per(float64(ladHalfLife) / iv),
	}
}

// The candidate forecasts a model weighs.
const (
	candNaive     = iota // the last value
	candLevel            // exponentially smoothed level
	candSeasonal         // level + damped trend + daily and weekly profiles
	candYesterday        // the same 10-minute slot on its latest visit, a day earlier
	candShape            // the last value plus yesterday's change from now's slot to the target's
	candLAD              // the last value plus a LAD fit of the change on recent changes (lad.go)
	nCand
)

// model forecasts one series (one rate of one model or tenant).
type model struct {
	n       uint64 // intervals seen, gaps included: indexes the rings
	started bool
	gapRun  int // consecutive intervals skipped as gaps

	seen  uint64  // values learned from (gaps excluded)
	last  float64 // last value that was not a gap
	plain float64 // smoothed level, no trend or season
	base  float64 // slow deseasonalised level the profiles are relative to
	level float64 // fast deseasonalised level of the seasonal candidate
	slope float64

	// Seasonal deviations relative to the level, per 10-minute slot.
	daily  [slotsPerDay]float32
	weekly [slotsPerWeek]float32

	// Per daily slot, the mean value of its latest visit (slotDay is that
	// visit's day number, slotN its values so far) and of the visit the
	// day before it (-1: unknown): a drop is a gap only if the same time
	// yesterday was not as low, and the latest visit is a candidate.
	slotDay  [slotsPerDay]int32
	slotN    [slotsPerDay]int32
	slotMean [slotsPerDay]float32
	slotPrev [slotsPerDay]float32

	hist     history // the LAD member's inputs
	horizons []horizon
}

// horizon tracks how good the forecasts made h intervals ahead have been.
type horizon struct {
	steps  int
	due    []pending      // ring: the forecast for interval n sits at n % steps
	err    [nCand]float64 // recent error of each candidate (memory ErrorHalfLife)
	q90    float64        // p90 of (actual - mean) / mean
	spread float64        // recent mean |r - q90|: scales the quantile's steps
	lad    ladFit
	// The same errors with a memory of slowErrorHorizons horizons (at
	// least ErrorHalfLife), and the recent error of the two combinations
	// (fast: by err, slow: by errSlow) that the mean weighs (combine.go).
	errSlow [nCand]float64
	pick    [nCombos]float64
	// A model's total: the recent error of its forecast as one series and
	// of its busiest tenant's plus the rest's (split.go).
	splitErr [2]float64
}

type pending struct {
	cand  [nCand]float64
	mean  float64
	combo [nCombos]float64 // the fast and the slow combination
	split splitPart        // a model's total: the whole and the split (split.go)
	scale float64          // the mean's scale (see scaleOf) when it was made
	set   bool
	// The LAD member's inputs then: features, the last value and the
	// scale the features were divided by.
	feat         [nFeat]float32
	origin, norm float64
}

func newModel(steps []int) *model {
	m := &model{horizons: make([]horizon, len(steps))}
	for i := range m.slotPrev {
		m.slotDay[i], m.slotMean[i], m.slotPrev[i] = -1, -1, -1
	}
	for i, s := range steps {
		m.horizons[i] = horizon{steps: s, due: make([]pending, s), err: [nCand]float64{1, 1, 1, 1, 1, 1}, spread: 0.1,
			errSlow: [nCand]float64{1, 1, 1, 1, 1, 1}, pick: [nCombos]float64{1, 1}, splitErr: [2]float64{1, 1}}
	}
	return m
}

// update takes the value x of the interval that started at unix second
// at; iv is the interval in seconds. A value far below the level is taken
// for a data gap and skipped, unless the same time yesterday was as low (a
// recurring quiet period, such as a batch client's off hours, is traffic)
// or the gap has lasted longer than maxGapSteps. A live series (Config.Live)
// has no such gaps: what the gateway did not see did not arrive.
func (m *model) update(k *coeffs, at, iv int64, x float64) {
	slot := slotOfUnix(at)
	yesterday := m.remember(at, slot%slotsPerDay, x)
	low := m.started && !k.live && x < k.gapFraction*m.plain
	if low && !(yesterday >= 0 && yesterday < k.gapFraction*m.plain) {
		m.gapRun = min(m.gapRun+1, 1<<30)
	} else {
		m.gapRun = 0
	}
	gap := m.gapRun > 0 && m.gapRun <= k.maxGapSteps
	for i := range m.horizons {
		h := &m.horizons[i]
		if p := &h.due[m.n%uint64(h.steps)]; p.set && !gap {
			h.score(k, p, x)
			h.lad.learn(p.feat, (x-p.origin)/p.norm, k.ladForget)
		}
	}
	if !gap {
		m.learn(k, slot, x)
	}
	if m.started {
		m.hist.add(at, m.last) // a gap counts as the last value
	}
	feat, norm := m.hist.features(m.last)
	for i := range m.horizons {
		h := &m.horizons[i]
		p := &h.due[m.n%uint64(h.steps)] // the slot the forecast for n+steps lands in
		p.cand = m.candidates(k, h, h.steps, at+int64(h.steps)*iv)
		p.mean, p.combo = h.combine(p.cand)
		p.scale = m.scaleOf(p.mean)
		p.set = m.started
		p.split = splitPart{}
		p.feat, p.origin, p.norm = feat, m.last, norm
	}
	m.n++
}

// remember records x as seen in daily slot ds on the day of unix second
// at, and returns the slot's mean value on the day before (-1: not seen
// then).
func (m *model) remember(at int64, ds int, x float64) float64 {
	day := int32(floorDiv(at, 24*3600))
	if m.slotDay[ds] != day {
		m.slotPrev[ds] = -1
		if m.slotDay[ds] == day-1 {
			m.slotPrev[ds] = m.slotMean[ds]
		}
		m.slotDay[ds], m.slotN[ds], m.slotMean[ds] = day, 1, float32(x)
	} else {
		m.slotN[ds] = min(m.slotN[ds]+1, 1<<20)
		m.slotMean[ds] += (float32(x) - m.slotMean[ds]) / float32(m.slotN[ds])
	}
	return float64(m.slotPrev[ds])
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// skip forgets the pending forecasts after intervals went unseen (the
// process was down): their outcomes are unknown. After more than
// maxGapSteps unseen the level is older than a gap may last, so a low
// value next is believed rather than skipped as a data gap for maxGapSteps
// more (during which the forecast would hold the old level: 4 h by
// default after a restart from a day-old snapshot).
func (m *model) skip(steps, maxGapSteps int) {
	m.n += uint64(steps)
	for i := range m.horizons {
		clear(m.horizons[i].due)
	}
	if steps > maxGapSteps {
		m.gapRun = max(m.gapRun, maxGapSteps)
	}
}

// learn is one step of exponential smoothing for the plain level and of
// multiplicative Holt-Winters for the seasonal candidate. The profiles are
// relative deviations from a slow base (half-life baseHalfLife), not from
// the fast level: a fast level follows a daily swing itself and would leave
// the profile almost nothing to learn. The daily profile starts as a
// running mean of the days seen, so one day of data already shapes it.
func (m *model) learn(k *coeffs, slot int, x float64) {
	if !m.started {
		m.started, m.last, m.plain, m.base, m.level = true, x, x, x, x
		m.seen = 1
		return
	}
	m.seen++
	m.last = x
	m.plain += k.alpha * (x - m.plain)
	ds := slot % slotsPerDay
	season := max(1+float64(m.daily[ds])+float64(m.weekly[slot]), minSeason)
	// A value where the profile expects little says little about the
	// level (a batch client's quiet hours): it moves the levels in
	// proportion to its seasonal factor.
	trust := min(season, 1)
	m.base += trust * max(k.baseRate, 1/float64(m.seen)) * (x/season - m.base)
	r := clampRel(x/math.Max(m.base, tiny) - 1)
	gd := max(k.gammaDay, 1/(float64(m.seen/uint64(k.stepsPerDay))*k.updatesPerVisit+1))
	d := float64(m.daily[ds]) + gd*(r-float64(m.weekly[slot])-float64(m.daily[ds]))
	m.daily[ds] = float32(d)
	m.weekly[slot] = float32(float64(m.weekly[slot]) + k.gammaWk*(r-d-float64(m.weekly[slot])))

	prev := m.level
	fitted := prev + k.phi*m.slope
	m.level = max(fitted+trust*k.alpha*(x/season-fitted), 0)
	m.slope = k.phi*m.slope + trust*k.beta*(m.level-prev-k.phi*m.slope)
}

// minSeason keeps a seasonal factor (1 + deviation) from reaching zero,
// which would make a deseasonalised value infinite.
const minSeason = 0.05

// tiny keeps relative errors finite when a rate is zero.
const tiny = 1e-6

// clampRel bounds a relative deviation: a rate cannot fall below zero
// (-1) and one burst from near zero must not dominate the averages.
func clampRel(r float64) float64 { return min(max(r, -1), 10) }

// candidates are the forecasts for steps intervals ahead, for the interval
// starting at unix second targetAt.
func (m *model) candidates(k *coeffs, h *horizon, steps int, targetAt int64) [nCand]float64 {
	var trend float64
	if k.phi < 1 {
		trend = m.slope * k.phi * (1 - math.Pow(k.phi, float64(steps))) / (1 - k.phi)
	}
	target := slotOfUnix(targetAt)
	ds := target % slotsPerDay
	season := max(1+float64(m.daily[ds])+float64(m.weekly[target]), minSeason)
	seasonal := max((m.level+trend)*season, 0)
	if m.slotDay[ds] < 0 {
		// A time of day never seen (a new series' first day, a gateway
		// started or restored at an hour it has not run at) has no
		// deviation learned, and its 0 put this candidate at the
		// deseasonalised level, as far from the current rate as now's slot
		// is from the slow base: where it weighed most, the forecast 30 min
		// ahead read 14 req/s with traffic at 50 (TestUnseenTimeOfDayIsNeutral).
		// Until the slot is seen the candidate is the smoothed level, no
		// season. Holding now's factor instead, or a deviation decaying
		// from now's, did better on a daily sine but worse on m-mid's first
		// days; this is better on both (RELIABILITY.md, branch forecastskip).
		seasonal = m.plain
	}
	yesterday := seasonal // until the slot was seen the day before the target
	known := false
	switch day := int32(floorDiv(targetAt, 24*3600)); {
	case m.slotDay[ds] == day-1:
		yesterday, known = float64(m.slotMean[ds]), true
	case m.slotDay[ds] == day && m.slotPrev[ds] >= 0: // the target's slot is under way
		yesterday, known = float64(m.slotPrev[ds]), true
	}
	// The daily shape's change over the horizon, applied to the current
	// value: yesterday's value at the target's time minus yesterday's at
	// now's. An on/off client's regular switch is in it before it shows.
	shape := m.last
	nowAt := targetAt - int64(steps)*k.iv
	if nd := slotOfUnix(nowAt) % slotsPerDay; known && m.slotDay[nd] == int32(floorDiv(nowAt, 24*3600)) && m.slotPrev[nd] >= 0 {
		shape = max(m.last+yesterday-float64(m.slotPrev[nd]), 0)
	}
	feat, norm := m.hist.features(m.last)
	lad := max(m.last+norm*h.lad.predict(feat), 0)
	return [nCand]float64{m.last, m.plain, seasonal, yesterday, shape, lad}
}

// forecast is the mean and p90 for steps intervals ahead (the interval
// starting at unix second targetAt), using the tracked horizon nearest at
// or above steps.
func (m *model) forecast(k *coeffs, steps int, targetAt int64) (mean, p90 float64) {
	h := m.horizonFor(steps)
	mean, _ = h.combine(m.candidates(k, h, steps, targetAt))
	return mean, m.p90Of(steps, mean)
}

// horizonFor is the tracked horizon nearest at or above steps.
func (m *model) horizonFor(steps int) *horizon {
	for i := range m.horizons {
		if m.horizons[i].steps >= steps {
			return &m.horizons[i]
		}
	}
	return &m.horizons[len(m.horizons)-1]
}

// p90Of is the p90 for a mean forecast steps intervals ahead.
func (m *model) p90Of(steps int, mean float64) float64 {
	return mean + max(m.horizonFor(steps).q90, 0)*m.scaleOf(mean)
}

// scaleOf is what errors of a forecast of mean are measured against: the
// mean itself, but no less than a quarter of the slow base, so that a
// forecast near zero (a quiet hour of an on/off client) neither makes
// every miss look infinite nor gets a p90 of zero.
func (m *model) scaleOf(mean float64) float64 {
	return max(mean, m.base/4, tiny)
}

// score learns from the forecast p now that its actual x is known: each
// candidate's error at both memories, each combination's, and one step of
// the p90 tracker (Robbins-Monro: up by 0.9 when the actual lands above,
// down by 0.1 when not, so it settles where 10% land above).
func (h *horizon) score(k *coeffs, p *pending, x float64) {
	denom := math.Max(p.scale, x)
	slow, pick := k.slowRates(h.steps)
	for i, c := range p.cand {
		e := math.Abs(x-c) / denom
		h.err[i] += k.errRate * (e - h.err[i])
		h.errSlow[i] += slow * (e - h.errSlow[i])
	}
	for i, c := range p.combo {
		h.pick[i] += pick * (math.Abs(x-c)/denom - h.pick[i])
	}
	h.scoreSplit(k, p, x)
	r := clampRel((x - p.mean) / p.scale)
	h.spread += k.errRate * (math.Abs(r-h.q90) - h.spread)
	if r > h.q90 {
		h.q90 += k.qStep * h.spread * 0.9
	} else {
		h.q90 -= k.qStep * h.spread * 0.1
	}
}
