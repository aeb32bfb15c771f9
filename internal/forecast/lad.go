package forecast

import (
	"math"
	"time"
)

// The LAD member forecasts the change over the horizon as a linear
// function of the series' own recent changes, fitted online by least
// absolute deviations (the fit for the absolute error the evaluation
// measures). On ServeGen m-mid it pulls a fresh move partly back toward
// the 6 h and 24 h means (docs/BENCHMARKS.md §10).
//
// Features, all divided by the series' 24 h mean so that one fit serves
// any scale: 1 (the intercept), the last value minus the mean of the
// 10-minute slot 1, 3 and 6 slots back, and minus the mean of the last 6 h
// and 24 h. They come from a ring of the last day's slot means of the
// series with gaps replaced by the last value: bounded memory whatever the
// interval.
const nFeat = 6

// ladHalfLife is the memory of the fit (1, 3, 7 and 14 days tried on days
// 1-7 of m-mid: the shortest fitted best).
const ladHalfLife = 24 * time.Hour

// ladFloorShare: a point's weight is 1/|its residual|, but no more than
// 1/(ladFloorShare × the recent mean |residual|), so that the few points
// fitted almost exactly do not take all the weight. Chosen on days 1-7 of
// m-mid (0.5, 1, 2, 4, 8 tried; see docs/BENCHMARKS.md §10).
const ladFloorShare = 1

// maxFeature bounds a normalised feature or target: a burst from a near
// zero day must not become a lever that swings the fit.
const maxFeature = 10

// history is the gap-cleaned series as 10-minute slot means.
type history struct {
	slot   int64 // number of the open slot (unix seconds / 600); valid if filled > 0 or n > 0
	sum    float64
	n      int32
	filled int32                // closed slots in ring, at most slotsPerDay
	ring   [slotsPerDay]float32 // closed slot means, slot s at s % slotsPerDay
	// Sums of the last 35 and 143 closed slot means (the 6 h and 24 h
	// means with the open slot), recomputed when a slot closes.
	sum6h, sumDay float64
}

// add records the cleaned value x of the interval starting at unix second
// at. Slots skipped (the process was down) take the last slot's mean.
func (h *history) add(at int64, x float64) {
	s := floorDiv(at, int64(SlotWidth/time.Second))
	if h.n > 0 && s != h.slot {
		mean := float32(h.sum / float64(h.n))
		for i, miss := h.slot, min(s, h.slot+int64(slotsPerDay)); i < miss; i++ {
			h.ring[floorMod(i, slotsPerDay)] = mean
			h.filled = min(h.filled+1, int32(slotsPerDay))
		}
		h.n, h.sum = 0, 0
		h.slot = s
		h.sums()
	}
	h.slot = s
	h.sum += x
	h.n = min(h.n+1, 1<<20)
}

func floorMod(a int64, b int) int { return int(a - floorDiv(a, int64(b))*int64(b)) }

// sums recomputes sum6h and sumDay: O(slotsPerDay) once per slot.
func (h *history) sums() {
	h.sum6h, h.sumDay = 0, 0
	for k := 1; k <= min(int(h.filled), slotsPerDay-1); k++ {
		v := float64(h.ring[floorMod(h.slot-int64(k), slotsPerDay)])
		h.sumDay += v
		if k < 36 {
			h.sum6h += v
		}
	}
}

// back is the mean of the slot k back from the open one (k = 0: the open
// slot so far); a slot not recorded yet counts as the open one.
func (h *history) back(k int) float64 {
	open := h.sum / float64(max(h.n, 1))
	if k == 0 || k > int(h.filled) {
		return open
	}
	return float64(h.ring[floorMod(h.slot-int64(k), slotsPerDay)])
}

// mean6h and meanDay are the means of the open slot and the 35 (143)
// closed before it, as many as are recorded.
func (h *history) mean6h() float64 {
	return (h.back(0) + h.sum6h) / float64(min(35, int(h.filled))+1)
}

func (h *history) meanDay() float64 {
	return (h.back(0) + h.sumDay) / float64(min(slotsPerDay-1, int(h.filled))+1)
}

// features of the last value x, and the scale they were divided by.
func (h *history) features(x float64) (f [nFeat]float32, norm float64) {
	norm = max(h.meanDay(), tiny)
	v := [nFeat]float64{1, x - h.back(1), x - h.back(3), x - h.back(6), x - h.mean6h(), x - h.meanDay()}
	for i := range v {
		if i > 0 {
			v[i] = min(max(v[i]/norm, -maxFeature), maxFeature)
		}
		f[i] = float32(v[i])
	}
	return f, norm
}

// ladFit is one horizon's fit: discounted, reweighted normal equations
// (iteratively reweighted least squares run online: each point is weighted
// by 1/|its residual| under the coefficients when it arrived), solved
// after every point. O(nFeat³) per update, fixed memory.
type ladFit struct {
	a    [nFeat * (nFeat + 1) / 2]float64 // upper triangle of Σ w f fᵀ, row-major
	b    [nFeat]float64                   // Σ w f y
	beta [nFeat]float64
	mad  float64 // recent mean |residual|, floors the reweighting
}

func (l *ladFit) predict(f [nFeat]float32) float64 {
	var s float64
	for i, v := range f {
		s += l.beta[i] * float64(v)
	}
	return s
}

// learn takes one point: features f and the change y that followed, both
// normalised; forget is the per-point discount.
func (l *ladFit) learn(f [nFeat]float32, y, forget float64) {
	y = min(max(y, -maxFeature), maxFeature)
	res := math.Abs(y - l.predict(f))
	w := 1 / max(res, ladFloorShare*l.mad, 1e-6)
	l.mad += max(forget, 0.01) * (res - l.mad)
	keep := 1 - forget
	idx := 0
	for p := range nFeat {
		l.b[p] = keep*l.b[p] + w*float64(f[p])*y
		for q := p; q < nFeat; q++ {
			l.a[idx] = keep*l.a[idx] + w*float64(f[p])*float64(f[q])
			idx++
		}
	}
	l.solve()
}

// solve sets beta from the normal equations, with a small ridge so that a
// constant feature (a flat series) cannot make them singular.
func (l *ladFit) solve() {
	var a [nFeat][nFeat + 1]float64
	idx := 0
	for p := range nFeat {
		for q := p; q < nFeat; q++ {
			a[p][q], a[q][p] = l.a[idx], l.a[idx]
			idx++
		}
		a[p][p] += 1e-6*a[p][p] + 1e-9
		a[p][nFeat] = l.b[p]
	}
	for i := range nFeat {
		piv := i
		for r := i + 1; r < nFeat; r++ {
			if math.Abs(a[r][i]) > math.Abs(a[piv][i]) {
				piv = r
			}
		}
		a[i], a[piv] = a[piv], a[i]
		if math.Abs(a[i][i]) < 1e-12 {
			return // keep the last coefficients
		}
		for r := range nFeat {
			if r == i || a[r][i] == 0 {
				continue
			}
			fct := a[r][i] / a[i][i]
			for c := i; c <= nFeat; c++ {
				a[r][c] -= fct * a[i][c]
			}
		}
	}
	var beta [nFeat]float64
	for i := range beta {
		beta[i] = a[i][nFeat] / a[i][i]
		if math.IsNaN(beta[i]) || math.Abs(beta[i]) > maxFeature {
			return
		}
	}
	l.beta = beta
}
