package main

import (
	"fmt"
	"math"
	"sort"
)

// twomeans is the 2-means threshold of v: the midpoint of the two groups'
// means, iterated from the median.
func twomeans(v []float64) float64 {
	thr := median(v)
	for range 50 {
		var sl, sh float64
		var nl, nh int
		for _, x := range v {
			if x <= thr {
				sl += x
				nl++
			} else {
				sh += x
				nh++
			}
		}
		if nl == 0 || nh == 0 {
			break
		}
		t := (sl/float64(nl) + sh/float64(nh)) / 2
		if math.Abs(t-thr) < 1e-9 {
			break
		}
		thr = t
	}
	return thr
}

func tisBin(k int) int {
	switch {
	case k <= 1:
		return 0
	case k <= 3:
		return 1
	case k <= 8:
		return 2
	case k <= 24:
		return 3
	case k <= 72:
		return 4
	}
	return 5
}

// mixMedian solves (1-p)F(m) + pF(m-d) = 1/2 for m, F the empirical CDF
// of the sorted residuals es: the median of "no switch" (the residual
// alone) mixed with "switch" (the residual plus the step d).
func mixMedian(es []float64, p, d float64) float64 {
	cdf := func(x float64) float64 {
		return float64(sort.SearchFloat64s(es, x)) / float64(len(es))
	}
	lo := es[0] + math.Min(0, d) - 1
	hi := es[len(es)-1] + math.Max(0, d) + 1
	for range 60 {
		m := (lo + hi) / 2
		if (1-p)*cdf(m)+p*cdf(m-d) < 0.5 {
			lo = m
		} else {
			hi = m
		}
	}
	return (lo + hi) / 2
}

// mixture scores angle (a): chunk-60's level as a two-state process.
func (e *env) mixture(ship row) {
	fmt.Println("# (a) chunk-60 as a two-level process; forecast = shipped + lambda * median (or mean) of the mixture")
	type cellf func(st, tis, o int) int
	cells := []struct {
		name string
		f    cellf
	}{
		{"state", func(st, tis, o int) int { return st }},
		{"state x time in state", func(st, tis, o int) int { return st*10 + tisBin(tis) }},
		{"state x time in state x 4h of day", func(st, tis, o int) int { return (st*10+tisBin(tis))*10 + (o%pd)/24 }},
		{"state x hour of day", func(st, tis, o int) int { return st*100 + (o%pd)/6 }},
	}
	var rows []row
	for _, cl := range cells {
		for _, kind := range []string{"median", "mean"} {
			for _, lam := range []float64{0.5, 1} {
				var fcs [3][]float64
				for i, h := range hs {
					fit := func(end int) func(o int) float64 {
						var v []float64
						for o := pd; o < end; o++ {
							if !e.og[o] {
								v = append(v, e.c[o])
							}
						}
						thr := twomeans(v)
						st := make([]int, e.n)
						tis := make([]int, e.n)
						for o := range e.n {
							if e.c[o] > thr {
								st[o] = 1
							}
							if o > 0 && st[o] == st[o-1] {
								tis[o] = min(tis[o-1]+1, 1000)
							}
						}
						cnt := map[int][2]float64{}
						var g [2][2]float64
						var steps [2][]float64
						var res []float64
						for o := pd; o+h < end; o++ {
							if !e.ok(o, h) {
								continue
							}
							k := cl.f(st[o], tis[o], o)
							c := cnt[k]
							c[1]++
							g[st[o]][1]++
							if st[o+h] != st[o] {
								c[0]++
								g[st[o]][0]++
								steps[st[o]] = append(steps[st[o]], e.c[o+h]-e.c[o])
							} else {
								res = append(res, e.d.ys[o+h]-e.d.mean[i][o])
							}
							cnt[k] = c
						}
						mres := median(res)
						for j := range res {
							res[j] -= mres
						}
						sort.Float64s(res)
						dst := [2]float64{median(steps[0]), median(steps[1])}
						return func(o int) float64 {
							s := st[o]
							p0 := (g[s][0] + 1) / (g[s][1] + 2)
							c := cnt[cl.f(s, tis[o], o)]
							p := (c[0] + 5*p0) / (c[1] + 5)
							var m float64
							if kind == "median" {
								m = mixMedian(res, p, dst[s])
							} else {
								m = p * dst[s]
							}
							return e.d.mean[i][o] + lam*m
						}
					}
					fcs[i] = e.walk(h, fit)
				}
				r := e.score(fmt.Sprintf("%s, %s, lambda %.1f", cl.name, kind, lam), fcs)
				rows = append(rows, r)
				fmt.Println(r)
			}
		}
	}
	best := ship
	for _, r := range rows {
		if r.tune[2] < best.tune[2] {
			best = r
		}
	}
	fmt.Printf("# (a) chosen on days 4-7 by 60 min: %s\n", best)
}

// feats are the direct models' inputs at origin o for horizon h, scaled by
// the total's mean over the last day.
type featurizer struct {
	e          *env
	px, pc, pr []float64 // prefix sums
	since      []int     // windows since chunk-60's last large one-window move
}

func newFeaturizer(e *env) *featurizer {
	f := &featurizer{e: e}
	pre := func(a []float64) []float64 {
		p := make([]float64, len(a)+1)
		for i, v := range a {
			p[i+1] = p[i] + v
		}
		return p
	}
	f.px, f.pc, f.pr = pre(e.x), pre(e.c), pre(e.r)
	var ch []float64
	for t := 1; t < 7*pd; t++ {
		if !e.og[t] && !e.og[t-1] {
			ch = append(ch, math.Abs(e.c[t]-e.c[t-1]))
		}
	}
	big := 5 * median(ch) // days 1-7 only
	f.since = make([]int, e.n)
	for t := 1; t < e.n; t++ {
		if math.Abs(e.c[t]-e.c[t-1]) > big {
			f.since[t] = 0
		} else {
			f.since[t] = min(f.since[t-1]+1, pd)
		}
	}
	return f
}

func (f *featurizer) at(o, h int, all bool) []float64 {
	e := f.e
	s := e.s[o]
	lag := func(a []float64, k int) float64 { return (a[o] - a[max(o-k, 0)]) / s }
	dev := func(a, p []float64, k int) float64 {
		lo := max(o+1-k, 0)
		return (a[o] - (p[o+1]-p[lo])/float64(o+1-lo)) / s
	}
	yd := func(a []float64) float64 {
		if o < pd {
			return 0
		}
		return (a[o-pd+h] - a[o-pd]) / s
	}
	tod := 2 * math.Pi * float64(o%pd) / pd
	v := []float64{
		lag(e.x, 1), lag(e.x, 3), lag(e.x, 6), lag(e.x, 12),
		dev(e.x, f.px, 36), dev(e.x, f.px, pd),
		math.Sin(tod), math.Cos(tod),
		(e.d.mean[hi(h)][o] - e.x[o]) / s,
		yd(e.x),
	}
	if !all {
		return v
	}
	lo, hiv := math.Inf(1), math.Inf(-1)
	for t := max(o-pd+1, 0); t <= o; t++ {
		lo, hiv = math.Min(lo, e.c[t]), math.Max(hiv, e.c[t])
	}
	return append(v,
		lag(e.c, 1), lag(e.c, 3), lag(e.c, 6), dev(e.c, f.pc, 36), dev(e.c, f.pc, pd), e.c[o]/s,
		lag(e.r, 1), lag(e.r, 3), lag(e.r, 6), dev(e.r, f.pr, 36), dev(e.r, f.pr, pd),
		math.Log1p(float64(f.since[o])),
		(e.c[o]-lo)/(hiv-lo+1),
		yd(e.r),
	)
}

// direct scores angle (c): per-horizon models of the conditional median.
func (e *env) direct(ship row) {
	fmt.Println("# (c) direct per-horizon models of the conditional median, walk forward (refit before each day)")
	f := newFeaturizer(e)
	type setting struct {
		model   string // gbm or lad
		stacked bool   // target: the shipped forecast's residual, else the change from the last value
		all     bool
		g       gbmConfig
	}
	var sets []setting
	for _, stacked := range []bool{true, false} {
		for _, all := range []bool{false, true} {
			sets = append(sets, setting{model: "lad", stacked: stacked, all: all})
			for _, depth := range []int{1, 2} {
				for _, rounds := range []int{40, 150, 400} {
					sets = append(sets, setting{model: "gbm", stacked: stacked, all: all, g: gbmConfig{rounds: rounds, depth: depth, minLeaf: 30, nu: 0.05}})
				}
			}
		}
	}
	name := func(s setting) string {
		t := "change from last"
		if s.stacked {
			t = "residual of shipped"
		}
		in := "own"
		if s.all {
			in = "all"
		}
		if s.model == "lad" {
			return fmt.Sprintf("LAD, %s, %s inputs", t, in)
		}
		return fmt.Sprintf("GBM-L1 depth %d x %d, %s, %s inputs", s.g.depth, s.g.rounds, t, in)
	}
	fitUse := func(s setting, h int, use func(o int) bool) func(o int) float64 {
		i := hi(h)
		{
			var xs [][]float64
			var ys []float64
			for o := pd; o+h < e.n; o++ {
				if !use(o) || !e.ok(o, h) {
					continue
				}
				base := e.x[o]
				if s.stacked {
					base = e.d.mean[i][o]
				}
				xs = append(xs, f.at(o, h, s.all))
				ys = append(ys, (e.x[o+h]-base)/e.s[o])
			}
			basef := func(o int) float64 {
				if s.stacked {
					return e.d.mean[i][o]
				}
				return e.d.ys[o]
			}
			if s.model == "lad" {
				xx := make([][]float64, len(xs))
				for j, x := range xs {
					xx[j] = append(append([]float64(nil), x...), 1)
				}
				beta := lad(xx, ys, 1)
				return func(o int) float64 {
					return basef(o) + e.s[o]*dot(beta, append(f.at(o, h, s.all), 1))
				}
			}
			m := fitGBM(xs, ys, s.g)
			return func(o int) float64 { return basef(o) + e.s[o]*m.predict(f.at(o, h, s.all)) }
		}
	}
	fitter := func(s setting, h int) func(end int) func(o int) float64 {
		return func(end int) func(o int) float64 {
			return fitUse(s, h, func(o int) bool { return o+h < end })
		}
	}
	var rows []row
	for _, s := range sets {
		var fcs [3][]float64
		for i, h := range hs {
			fcs[i] = e.walk(h, fitter(s, h))
		}
		r := e.score(name(s), fcs)
		rows = append(rows, r)
		fmt.Println(r)
	}
	// per horizon the setting days 4-7 pick, walk forward and frozen on days 1-7
	var pick, late [3]int
	for i := range hs {
		for j, r := range rows {
			if r.tune[i] < rows[pick[i]].tune[i] {
				pick[i] = j
			}
			if r.late[i] < rows[late[i]].late[i] {
				late[i] = j
			}
		}
		fmt.Printf("# (c) %dm: days 4-7 pick %s (shipped %.3f); days 6-7 pick %s (shipped %.3f), days 8-14 %.3f\n",
			10*hs[i], name(sets[pick[i]]), ship.tune[i], name(sets[late[i]]), ship.late[i], rows[late[i]].test[i])
	}
	var wf, fz [3][]float64
	for i, h := range hs {
		wf[i] = e.walk(h, fitter(sets[pick[i]], h))
		fz[i] = e.frozen(h, fitter(sets[pick[i]], h))
	}
	r := e.score("(c) per horizon the setting days 4-7 pick, walk forward", wf)
	fmt.Println(r)
	r = e.score("(c) the same, fitted once on days 1-7", fz)
	fmt.Println(r)
	// a bound: each day of days 8-14 forecast by a fit on every other day
	// of the two weeks (it sees the rest of week 2, the future included)
	for _, s := range sets {
		if s.model != "gbm" || s.g.rounds == 400 || !s.all {
			continue
		}
		var fcs [3][]float64
		for i, h := range hs {
			fcs[i] = append([]float64(nil), e.d.mean[i]...)
			for day := 7; day < e.n/pd; day++ {
				lo, hi := day*pd-h, (day+1)*pd-h
				fn := fitUse(s, h, func(o int) bool { return o+h < lo || o >= hi+h })
				for o := lo; o < hi && o < e.n; o++ {
					fcs[i][o] = fn(o)
				}
			}
		}
		r := e.score("bound, leave one day of 8-14 out: "+name(s), fcs)
		fmt.Println(r)
	}
	for i, h := range hs {
		// the p90 moved with the mean, as the forecaster's p90 tracks the mean's residual
		p := make([]float64, e.n)
		for o := range p {
			p[o] = e.d.p90[i][o] + wf[i][o] - e.d.mean[i][o]
		}
		fmt.Printf("# (c) %dm: p90 coverage days 8-14 with the p90 shifted by the correction %.2f (shipped %.2f)\n", 10*h, e.test.cover(p, h), e.test.cover(e.d.p90[i], h))
	}
}
