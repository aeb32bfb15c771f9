package forecast

import "math"

// How the mean forecast weighs the candidates, per tracked horizon.
//
// Two combinations of the same candidates are kept: the fast one weighs
// them by their error over the last ErrorHalfLife (1 h), the slow one by
// their error over slowErrorHorizons horizons (4 h at 60 minutes; at short
// horizons both are the same). The mean weighs the two the same way by
// their own error over pickHorizons horizons.
//
// Why two: at 60 minutes an hour's memory is six 10-minute windows, too
// few to see a member's lead of a few per cent through the noise, so the
// fast combination kept switching between members and ServeGen m-mid's
// summed series scored no better than the last value (0.999x), while the
// LAD member alone scored 0.967x. A slow memory alone takes most of that
// gain but costs the clients with a daily cycle, whose best member changes
// within hours; letting each series' own record pick between the two keeps
// both. Chosen on days 1-7 of m-mid by the rule of docs/BENCHMARKS.md §10
// (slow memory 4, 6, 8, 12 horizons; pick memory 12, 36, 144 horizons;
// pick weighting by the inverse 2nd, 8th, 32nd power).
const (
	slowErrorHorizons = 4
	pickHorizons      = 36
	nCombos           = 2 // fast, slow
)

// slowRates are the per-interval smoothing constants of the slow errors
// and of the combinations' errors for a horizon of steps intervals.
func (k *coeffs) slowRates(steps int) (slow, pick float64) {
	per := func(halfLife float64) float64 { return 1 - math.Exp2(-1/halfLife) }
	return per(max(k.errHalfSteps, slowErrorHorizons*float64(steps))), per(pickHorizons * float64(steps))
}

// combine is the mean forecast from the candidates c, and the two
// combinations it blends.
func (h *horizon) combine(c [nCand]float64) (mean float64, combos [nCombos]float64) {
	combos = [nCombos]float64{weigh(c[:], h.err[:]), weigh(c[:], h.errSlow[:])}
	return weigh(combos[:], h.pick[:]), combos
}

// weigh weights forecasts by the inverse eighth power of their recent
// errors: close to picking the best, while near-ties are blended.
// (Inverse squares, Bates-Granger, leaned on the last value through a
// seasonal client's quiet hours and missed its next busy hour; see
// docs/BENCHMARKS.md §10.)
func weigh(forecasts, errs []float64) float64 {
	var sum, wsum float64
	for i, v := range forecasts {
		w := 1 / (errs[i]*errs[i] + 1e-12)
		w *= w
		w *= w // the eighth power
		sum += w * v
		wsum += w
	}
	return sum / wsum
}
