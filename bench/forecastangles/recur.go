package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// recurrence prints whether the largest client's step onsets repeat in
// time: for each onset, is there an onset the same way at the same clock
// time (within ±tol windows) one, two or seven days earlier (days 8-14 can
// look back a week to days 1-7), against the share a random window would
// show (the onsets' density in that direction over 2·tol+1 windows). A
// schedule (a batch job started at the same time each day or weekday)
// would show shares well above chance.
func (e *env) recurrence(w io.Writer) {
	c := e.tr.names[0]
	x := e.clients[c]
	med := e.medianChange(x)
	l := stepLevel(x, 2)
	for _, mult := range []float64{3, 5, 8} {
		jump := onsets(l, mult*med)
		for _, lag := range []int{1, 2, 7} {
			for _, tol := range []int{1, 3, 6} {
				hit, n, chance := onsetRecurrence(jump, lag*perDay, tol)
				if n == 0 {
					continue
				}
				fmt.Fprintf(w, "# recurrence of %s onsets (median 5, > %.0fx): lag %dd ±%d windows: %d of %d (%.2f; chance %.2f)\n",
					c, mult, lag, tol, hit, n, float64(hit)/float64(n), chance)
			}
		}
	}
	for _, up := range []bool{false, true} {
		fmt.Fprintf(w, "# %s of %s: recovery at +60m, days 1-%d: %s; after: %s\n", map[bool]string{false: "dips (under half the level before)", true: "bumps (over 1.5x + 200 the level before)"}[up],
			c, e.trainEnd/perDay, recovery(x, e.og, 0, e.trainEnd, up), recovery(x, e.og, e.trainEnd, e.n, up))
	}
}

// medianChange is the median absolute one-window change of x over the
// training days, gaps left out.
func (e *env) medianChange(x []float64) float64 {
	var d []float64
	for t := 1; t < e.trainEnd; t++ {
		if !e.og[t] && !e.og[t-1] {
			d = append(d, math.Abs(x[t]-x[t-1]))
		}
	}
	return median(d)
}

// onsetRecurrence counts the onsets (jump[t] != 0) with an onset of the
// same sign within ±tol windows of t-lag, over those with t-lag-tol >= 0,
// and the chance share: the density of onsets of one sign times 2·tol+1.
func onsetRecurrence(jump []float64, lag, tol int) (hit, n int, chance float64) {
	var up, down int
	for _, j := range jump {
		if j > 0 {
			up++
		} else if j < 0 {
			down++
		}
	}
	for t, j := range jump {
		if j == 0 || t-lag-tol < 0 {
			continue
		}
		n++
		for s := t - lag - tol; s <= min(len(jump)-1, t-lag+tol); s++ {
			if jump[s]*j > 0 {
				hit++
				break
			}
		}
	}
	chance = float64(up+down) / 2 / float64(len(jump)) * float64(2*tol+1)
	return hit, n, chance
}

// recovery reads, for windows o in [lo, hi) where x has been in a dip
// (or bump) for a windows (a = 1, 2, 3+: each of them under half, or
// over 1.5x + 200, the median of the 3 windows before the dip), how much
// of the way back to that level x is an hour later: (x[o+6]-x[o]) /
// (pre-x[o]). A median over 0.5 would mean a forecaster scored by
// absolute error should lean back toward the level before.
func recovery(x []float64, gaps []bool, lo, hi int, up bool) string {
	var by [3][]float64
	in := func(v, pre float64) bool {
		if up {
			return v > 1.5*pre+200
		}
		return v < 0.5*pre
	}
	for o := max(lo, 40); o+6 < hi; o++ {
		if gaps[o] {
			continue
		}
		a := 0
		for a < 30 && in(x[o-a], median(slices.Clone(x[o-a-3:o-a]))) {
			a++
		}
		if a == 0 {
			continue
		}
		pre := median(slices.Clone(x[o-a-3 : o-a]))
		if !up && pre < 300 {
			continue
		}
		by[min(a, 3)-1] = append(by[min(a, 3)-1], (x[o+6]-x[o])/(pre-x[o]))
	}
	s := ""
	for i, v := range by {
		if len(v) == 0 {
			continue
		}
		over := 0
		for _, r := range v {
			if r > 0.5 {
				over++
			}
		}
		s += fmt.Sprintf(" age %d%s n=%d median %.2f share>0.5 %.2f;", i+1, map[bool]string{true: "+", false: ""}[i == 2], len(v), median(slices.Clone(v)), float64(over)/float64(len(v)))
	}
	return strings.TrimSuffix(s, ";")
}
