package forecast

import "math"

// A model's total forecast two ways, and the two weighed by their record.
//
// The whole: the model's total as one series. The split: its busiest
// tenant's own forecast plus a forecast of the rest (the total minus that
// tenant), a series kept for the purpose. On ServeGen m-mid one client
// carries half the volume and moves in level steps that the other 108
// partly offset; forecasting it apart helps at long horizons in some
// weeks and hurts at short ones in others, so neither way is kept alone:
// each horizon's forecast weighs the two by the inverse eighth power of
// their smoothed error over pickHorizons horizons (the combiner's own
// settings, which were also the best of 6-144 horizons x power 2 or 8 on
// days 1-7 of m-mid; docs/BENCHMARKS.md §10, "branch fcpick").
//
// Not in the snapshot: after a restore the rest series starts again and
// the two start even (the tenant's and the total's models are restored,
// so the split is the restored tenant's forecast plus a fresh one of the
// rest).
type split struct {
	lead string // the tenant forecast apart
	rest *pair  // the model's total minus lead's
	// The busiest tenant series found by the latest chooseLeads (gen).
	best     string
	bestBase float64
	gen      uint64
}

// leadSwitch: another tenant takes the lead only when its slow level is
// this many times the lead's, so that two tenants of similar size do not
// reset the rest series back and forth.
const leadSwitch = 2

// splitPart is a pending forecast's two versions, for the pick's record.
type splitPart struct {
	whole, split float64
	set          bool
}

// updateSplits feeds every model's rest series the interval just closed
// (tallies as counted) and, where a split is ready, turns the forecasts
// each model's series just made into the weighed ones.
func (f *Forecaster) updateSplits(at, iv int64, secs float64) {
	f.chooseLeads()
	for model, s := range f.splits {
		mk, lk := Key{Model: model}, Key{Model: model, Tenant: s.lead}
		var total, lead tally
		if t := f.open[mk]; t != nil {
			total = *t
		}
		if t := f.open[lk]; t != nil {
			lead = *t
		}
		s.rest.requests.update(&f.k, at, iv, max(total.requests-lead.requests, 0)/secs)
		s.rest.tokens.update(&f.k, at, iv, max(total.tokens-lead.tokens, 0)/secs)
		mp, lp := f.series[mk], f.series[lk]
		if mp == nil || lp == nil {
			continue
		}
		mp.requests.weighLatest(lp.requests, s.rest.requests)
		mp.tokens.weighLatest(lp.tokens, s.rest.tokens)
	}
}

// chooseLeads picks each model's busiest tenant series (by its slow
// level of requests) and starts a fresh rest series when the lead
// changes; a model with no tenant series has no split. No allocation
// unless a split starts.
func (f *Forecaster) chooseLeads() {
	f.splitGen++
	for k, p := range f.series {
		if k.Tenant == "" {
			continue
		}
		s := f.splits[k.Model]
		if s == nil {
			s = &split{}
			f.splits[k.Model] = s
		}
		// Ties go to the smaller name: map order is random, and two
		// forecasters fed the same arrivals must pick the same lead.
		if m := p.requests.hist.meanDay(); s.gen != f.splitGen || m > s.bestBase || (m == s.bestBase && k.Tenant < s.best) {
			s.gen, s.best, s.bestBase = f.splitGen, k.Tenant, m
		}
	}
	for model, s := range f.splits {
		if s.gen != f.splitGen {
			delete(f.splits, model)
			continue
		}
		cur := f.series[Key{Model: model, Tenant: s.lead}]
		if s.rest != nil && cur != nil && (s.best == s.lead || s.bestBase <= leadSwitch*cur.requests.hist.meanDay()) {
			continue
		}
		s.lead, s.rest = s.best, &pair{requests: newModel(f.horizons), tokens: newModel(f.horizons)}
		if mp := f.series[Key{Model: model}]; mp != nil {
			mp.requests.resetSplit()
			mp.tokens.resetSplit()
		}
	}
}

// weighLatest replaces the mean of the forecasts m just made (one per
// tracked horizon) by the whole and the split (lead's plus rest's, made
// at the same time) weighed by their record.
func (m *model) weighLatest(lead, rest *model) {
	if !m.started || !lead.started || !rest.started || m.n == 0 || lead.n == 0 || rest.n == 0 {
		return
	}
	for i := range m.horizons {
		h := &m.horizons[i]
		p := &h.due[(m.n-1)%uint64(h.steps)]
		if !p.set {
			continue
		}
		s := lead.latest(i).mean + rest.latest(i).mean
		p.split = splitPart{whole: p.mean, split: s, set: true}
		p.mean = weigh([]float64{p.mean, s}, h.splitErr[:])
		p.scale = m.scaleOf(p.mean)
	}
}

func (m *model) latest(i int) *pending {
	h := &m.horizons[i]
	return &h.due[(m.n-1)%uint64(h.steps)]
}

// resetSplit starts the pick's record even and forgets the split parts
// of the forecasts in flight (the rest series they came from is gone).
func (m *model) resetSplit() {
	for i := range m.horizons {
		h := &m.horizons[i]
		h.splitErr = [2]float64{1, 1}
		for j := range h.due {
			h.due[j].split = splitPart{}
		}
	}
}

// scoreSplit learns the whole's and the split's errors from a forecast
// come due (the same relative error as the candidates', the pick's memory).
func (h *horizon) scoreSplit(k *coeffs, p *pending, x float64) {
	if !p.split.set {
		return
	}
	denom := math.Max(p.scale, x)
	_, pick := k.slowRates(h.steps)
	h.splitErr[0] += pick * (math.Abs(x-p.split.whole)/denom - h.splitErr[0])
	h.splitErr[1] += pick * (math.Abs(x-p.split.split)/denom - h.splitErr[1])
}

// splitForecast is the model key's mean for steps ahead, weighed with the
// split where one is ready (see updateSplits); ok false where not.
func (f *Forecaster) splitForecast(model string, whole *model, rate func(*pair) *model, steps int, target int64, mean float64) float64 {
	s := f.splits[model]
	if s == nil {
		return mean
	}
	lp := f.series[Key{Model: model, Tenant: s.lead}]
	rm := rate(s.rest)
	if lp == nil || !rate(lp).started || !rm.started {
		return mean
	}
	lm, _ := rate(lp).forecast(&f.k, steps, target)
	rs, _ := rm.forecast(&f.k, steps, target)
	h := whole.horizonFor(steps)
	return weigh([]float64{mean, lm + rs}, h.splitErr[:])
}
