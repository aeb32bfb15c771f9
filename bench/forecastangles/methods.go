package main

import (
	"cmp"
	"math"
	"slices"
)

// method forecasts x[o+h] from x[:o+1].
type method func(x []float64, o, h int) float64

func naive(x []float64, o, _ int) float64 { return x[o] }

func snaive(x []float64, o, h int) float64 {
	if o+h < perDay {
		return x[o]
	}
	return x[o+h-perDay]
}

func zero([]float64, int, int) float64 { return 0 }

func meanOf(k int) method {
	return func(x []float64, o, _ int) float64 {
		lo := max(0, o-k+1)
		return sumOf(x[lo:o+1]) / float64(o+1-lo)
	}
}

func medianOf(k int) method {
	return func(x []float64, o, _ int) float64 {
		lo := max(0, o-k+1)
		return median(slices.Clone(x[lo : o+1]))
	}
}

// seasonalDiff is the last value plus the mean (or median) over the last
// k days of the change from now's window to the target's window.
func seasonalDiff(k int, useMedian bool) method {
	return func(x []float64, o, h int) float64 {
		var ds []float64
		for d := 1; d <= k && o-d*perDay >= 0; d++ {
			ds = append(ds, x[o+h-d*perDay]-x[o-d*perDay])
		}
		if len(ds) == 0 {
			return x[o]
		}
		c := sumOf(ds) / float64(len(ds))
		if useMedian {
			c = median(ds)
		}
		return max(x[o]+c, 0)
	}
}

// median sorts xs in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	m := len(xs)
	if m%2 == 1 {
		return xs[m/2]
	}
	return (xs[m/2-1] + xs[m/2]) / 2
}

type namedMethod struct {
	name string
	f    method
}

// perClientMethods are the candidates for one client's forecast.
var perClientMethods = []namedMethod{
	{"naive", naive}, {"snaive", snaive}, {"zero", zero},
	{"mean3", meanOf(3)}, {"mean6", meanOf(6)}, {"mean12", meanOf(12)}, {"mean36", meanOf(36)},
	{"med3", medianOf(3)}, {"med6", medianOf(6)},
	{"sdiff1", seasonalDiff(1, false)}, {"sdiff3", seasonalDiff(3, false)},
	{"sdiff3med", seasonalDiff(3, true)}, {"sdiff6med", seasonalDiff(6, true)},
}

func forecasts(x []float64, f method, h int) []float64 {
	out := make([]float64, len(x))
	for o := range x {
		out[o] = f(x, o, h)
	}
	return out
}

// slotProfile is, per daily slot, the mean or median of x[t+h]-x[t] over
// the training windows (gaps left out).
func slotProfile(x []float64, gaps []bool, h, trainEnd int, useMedian bool) []float64 {
	prof := make([]float64, perDay)
	for s := range prof {
		var ds []float64
		for t := s; t+h < trainEnd; t += perDay {
			if !gaps[t] && !gaps[t+h] {
				ds = append(ds, x[t+h]-x[t])
			}
		}
		if len(ds) == 0 {
			continue
		}
		prof[s] = sumOf(ds) / float64(len(ds))
		if useMedian {
			prof[s] = median(ds)
		}
	}
	return prof
}

// analog is a nearest-neighbour forecast: the median h-window change of
// the k past situations most like now (the changes over the last 1, 2, 3,
// 6 and 12 windows), from every pair completed before now.
func analog(x []float64, gaps []bool, h, k int) []float64 {
	fc := slices.Clone(x)
	type entry struct {
		v      [5]float64
		change float64
		dist   float64
	}
	vec := func(o int) (v [5]float64) {
		for i, j := range []int{1, 2, 3, 6, 12} {
			v[i] = (x[o] - x[o-j]) / 100
		}
		return v
	}
	var lib []entry
	for o := 12; o < len(x); o++ {
		if p := o - h; p >= 12 && !gaps[p] && !gaps[o] {
			lib = append(lib, entry{v: vec(p), change: x[o] - x[p]})
		}
		if len(lib) < 50 {
			continue
		}
		v := vec(o)
		for i := range lib {
			var d float64
			for j := range v {
				d += (lib[i].v[j] - v[j]) * (lib[i].v[j] - v[j])
			}
			lib[i].dist = d
		}
		near := slices.Clone(lib)
		slices.SortStableFunc(near, func(a, b entry) int { return cmp.Compare(a.dist, b.dist) })
		ch := make([]float64, 0, k)
		for _, e := range near[:min(k, len(near))] {
			ch = append(ch, e.change)
		}
		fc[o] = math.Max(x[o]+median(ch), 0)
	}
	return fc
}
