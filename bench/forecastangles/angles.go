package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// perClient is angle (a): each client forecast on its own and the
// forecasts summed.
func (e *env) perClient() []row {
	rows := []row{
		{name: "(a) per client: method by its own error on days 2-7", hasTrain: true},
		{name: "(a) per client: method by its own error on days 8-14 (bound)", hasTrain: true},
		{name: "(a) 20 largest: methods chosen for the sum's error, days 2-7", hasTrain: true},
		{name: "(a) every client mean of last 3 windows", hasTrain: true},
		{name: "(a,c,d) every client last + median same-hour change, 6 days", hasTrain: true},
	}
	for i, h := range horizons {
		fc := make(map[string][][]float64, len(e.tr.names))
		for _, c := range e.tr.names {
			for _, m := range perClientMethods {
				fc[c] = append(fc[c], forecasts(e.clients[c], m.f, h))
			}
		}
		own, hind := make(map[string]int), make(map[string]int)
		for _, c := range e.tr.names {
			own[c] = e.bestFor(c, fc[c], split{ys: e.tr.rate[c][:e.trainEnd], gaps: e.train.gaps, lo: perDay, hi: e.trainEnd}, h)
			hind[c] = e.bestFor(c, fc[c], split{ys: e.tr.rate[c], gaps: e.test.gaps, lo: e.trainEnd, hi: e.n}, h)
		}
		e.score(&rows[0], i, e.total(fc, own, nil))
		e.score(&rows[1], i, e.total(fc, hind, nil))
		greedy := e.greedy(fc, h)
		e.score(&rows[2], i, e.total(fc, greedy, nil))
		rows[2].chosenByHorz[i] = describe(greedy)
		e.score(&rows[3], i, e.total(fc, nil, func(string) int { return methodIndex("mean3") }))
		e.score(&rows[4], i, e.total(fc, nil, func(string) int { return methodIndex("sdiff6med") }))
	}
	var b strings.Builder
	for i, h := range horizons {
		fmt.Fprintf(&b, "%dm: %s; ", h*10, rows[2].chosenByHorz[i])
	}
	rows[2].chosen = strings.TrimSuffix(b.String(), "; ")
	return rows
}

func methodIndex(name string) int {
	for i, m := range perClientMethods {
		if m.name == name {
			return i
		}
	}
	panic("no method " + name)
}

// bestFor is the index of the method with the least error for client c's
// own series on s.
func (e *env) bestFor(c string, fcs [][]float64, s split, h int) int {
	best, bestErr := 0, math.Inf(1)
	for j, fc := range fcs {
		if v := s.mae(fc, h); v < bestErr {
			best, bestErr = j, v
		}
	}
	return best
}

// total sums the clients' forecasts: client c uses method pick[c] (or
// choose(c), or naive when neither names it).
func (e *env) total(fc map[string][][]float64, pick map[string]int, choose func(string) int) []float64 {
	out := make([]float64, e.n)
	for _, c := range e.tr.names {
		j, ok := pick[c]
		if !ok {
			j = 0
			if choose != nil {
				j = choose(c)
			}
		}
		for o, v := range fc[c][j] {
			out[o] += v
		}
	}
	return out
}

// greedy chooses methods for the 20 largest clients (the rest naive) by
// coordinate descent on the summed forecast's error on days 2-7.
func (e *env) greedy(fc map[string][][]float64, h int) map[string]int {
	top := e.tr.names[:min(20, len(e.tr.names))]
	pick := map[string]int{}
	cur := e.total(fc, pick, nil)
	best := e.train.mae(cur, h)
	for range 2 {
		for _, c := range top {
			for j := range perClientMethods {
				old := pick[c]
				if j == old {
					continue
				}
				for o := range cur {
					cur[o] += fc[c][j][o] - fc[c][old][o]
				}
				if v := e.train.mae(cur, h); v < best-1e-9 {
					best, pick[c] = v, j
					continue
				}
				for o := range cur {
					cur[o] -= fc[c][j][o] - fc[c][old][o]
				}
			}
		}
	}
	return pick
}

func describe(pick map[string]int) string {
	var parts []string
	for c, j := range pick {
		if j != 0 {
			parts = append(parts, c+"="+perClientMethods[j].name)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// linear is angles (b) and (d): a linear forecast of the sum's h-window
// change, fitted by least absolute deviations on days 1-7 (and, as a
// bound, on the scored days themselves).
func (e *env) linear() []row {
	sets := []featureSet{{own: true}, {own: true, yday: true}, {own: true, prof: true},
		{own: true, clients: true}, {own: true, cv: true}, {own: true, yday: true, prof: true, clients: true, cv: true}}
	in := &inputs{x: e.x}
	for _, c := range e.tr.names[:min(8, len(e.tr.names))] {
		in.clients = append(in.clients, e.clients[c])
	}
	for _, c := range e.tr.names[:min(3, len(e.tr.names))] {
		in.cvs = append(in.cvs, clean(e.tr.cv[c], e.og))
	}
	var rows []row
	olsRow := row{name: "(d) OLS on own changes, days 1-7"}
	refit := row{name: "(d) LAD on own changes, refit each day on all days so far"}
	for _, f := range sets {
		fit, bound := row{name: "(b,d) LAD on " + f.String() + ", days 1-7"}, row{name: "bound: LAD on " + f.String() + ", fitted on days 8-14"}
		for i, h := range horizons {
			in.profMean = slotProfile(e.x, e.og, h, e.trainEnd, false)
			in.profMedin = slotProfile(e.x, e.og, h, e.trainEnd, true)
			beta := lad(e.pairs(in, f, h, 0, e.trainEnd))
			e.score(&fit, i, e.apply(in, f, h, beta))
			tx, ty := e.testPairs(in, f, h)
			e.score(&bound, i, e.apply(in, f, h, lad(tx, ty, 60)))
			if f == sets[0] {
				xs, ys, _ := e.pairs(in, f, h, 0, e.trainEnd)
				e.score(&olsRow, i, e.apply(in, f, h, ols(xs, ys)))
				e.score(&refit, i, e.refitDaily(in, f, h))
			}
		}
		rows = append(rows, fit, bound)
	}
	return append(rows, olsRow, refit, e.largestAlone())
}

// pairs are the training pairs (inputs at o, change from o to t = o+h) for
// targets t in [from, to), gaps (found online) left out; the third result
// is the LAD iteration count.
func (e *env) pairs(in *inputs, f featureSet, h, from, to int) ([][]float64, []float64, int) {
	var xs [][]float64
	var ys []float64
	for t := max(from, perDay); t < to; t++ {
		if o := t - h; o >= 144 && !e.og[t] && !e.og[o] {
			xs, ys = append(xs, in.features(f, o, h)), append(ys, in.x[t]-in.x[o])
		}
	}
	return xs, ys, 60
}

// testPairs are the scored days' pairs, by the scoring rule.
func (e *env) testPairs(in *inputs, f featureSet, h int) ([][]float64, []float64) {
	var xs [][]float64
	var ys []float64
	g := e.test.gaps
	for t := e.trainEnd; t < e.n; t++ {
		if !g[t] && !g[t-h] && !g[t-perDay] {
			xs, ys = append(xs, in.features(f, t-h, h)), append(ys, in.x[t]-in.x[t-h])
		}
	}
	return xs, ys
}

// apply forecasts every origin from the scored days' start with beta.
func (e *env) apply(in *inputs, f featureSet, h int, beta []float64) []float64 {
	fc := make([]float64, e.n)
	for o := perDay; o < e.n; o++ {
		fc[o] = math.Max(in.x[o]+dot(beta, in.features(f, o, h)), 0)
	}
	return fc
}

// largestAlone bounds what a linear model of the largest client's own
// history could do for that client: LAD on own+yday fitted on the scored
// days, as a ratio to the client's own better baseline.
func (e *env) largestAlone() row {
	c := e.tr.names[0]
	in := &inputs{x: e.clients[c]}
	f := featureSet{own: true, yday: true}
	r := row{name: "bound: " + c + " alone, LAD on own+yday fitted on days 8-14"}
	s := split{ys: e.tr.rate[c], gaps: e.test.gaps, lo: e.trainEnd, hi: e.n}
	for i, h := range horizons {
		xs, ys := e.testPairs(in, f, h)
		r.test[i] = s.mae(e.apply(in, f, h, lad(xs, ys, 60)), h) / s.baseline(h)
	}
	return r
}

// refitDaily fits on every pair completed before each scored day starts.
func (e *env) refitDaily(in *inputs, f featureSet, h int) []float64 {
	fc := make([]float64, e.n)
	for o := perDay; o < e.trainEnd; o++ {
		fc[o] = in.x[o]
	}
	for day := e.trainEnd / perDay; day*perDay < e.n; day++ {
		beta := lad(e.pairs(in, f, h, 0, day*perDay))
		for o := day*perDay - h; o < min(e.n, (day+1)*perDay)-h; o++ {
			fc[o] = math.Max(in.x[o]+dot(beta, in.features(f, o, h)), 0)
		}
	}
	return fc
}
