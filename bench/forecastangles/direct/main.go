// Command direct scores, offline, three angles on issue 14's 60-minute
// target (m-mid, days 8-14, tuned on days 1-7) on top of the shipped
// forecaster's per-window forecasts, which ../dominant dumps:
//
//   - a mixture median: chunk-60 (the dominant client) as a two-level
//     process whose chance of switching level within the horizon is
//     learned by state, time in that state and time of day; the forecast
//     is the median (not the mean) of the mixture of "no switch" and
//     "switch" around the shipped forecast;
//   - direct per-horizon models of the conditional median: gradient
//     boosting with an absolute loss (LAD_TreeBoost) and a linear LAD, on
//     lagged features of the total, chunk-60, the other clients, time of
//     day and the shipped forecast;
//   - the scorer: the command's figures recomputed from the dump, and what
//     the ratios depend on.
//
// Every model is refitted before each day on the pairs whose target lies
// before it (walk forward); settings are chosen on days 4-7 and then read
// on days 8-14. docs/BENCHMARKS.md §10 ("A fresh look: the dominant client as a two-level
// mixture, ...") holds the output.
//
//	go run ./bench/forecastangles/dominant -servegen $FA_SERVEGEN -out /tmp/fa
//	go run ./bench/forecastangles/direct -data /tmp/fa
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
)

func main() {
	dir := flag.String("data", "/tmp/forecastangles", "folder ../dominant wrote fc.csv and clients.csv to")
	flag.Parse()
	d, err := load(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "direct:", err)
		os.Exit(1)
	}
	run(d)
}

// env holds the gap-cleaned series every angle reads.
type env struct {
	d       *data
	og      []bool
	x, c, r []float64 // the total, chunk-60, the other clients (cleaned)
	s       []float64 // the total's mean over the last day (scale)
	n       int
	tune    split // days 4-7 (mask on days 1-7 only)
	late    split // days 6-7 (the same mask)
	test    split // days 8-14
}

func newEnv(d *data) *env {
	e := &env{d: d, n: len(d.ys)}
	e.og = onlineGaps(d.ys)
	e.x = clean(d.ys, e.og)
	c60 := -1
	for j, nm := range d.names {
		if nm == "chunk-60" {
			c60 = j
		}
	}
	if c60 < 0 {
		// the largest client on days 1-7
		best := -1.0
		for j, v := range d.clients {
			var s float64
			for _, y := range v[:7*pd] {
				s += y
			}
			if s > best {
				best, c60 = s, j
			}
		}
	}
	e.c = clean(d.clients[c60], e.og)
	e.r = make([]float64, e.n)
	e.s = make([]float64, e.n)
	var run float64
	for o := range e.n {
		e.r[o] = e.x[o] - e.c[o]
		run += e.x[o]
		if o >= pd {
			run -= e.x[o-pd]
		}
		e.s[o] = math.Max(1, run/float64(min(o+1, pd)))
	}
	e.tune = newSplit(d.ys, 3*pd, 7*pd)
	e.late = newSplit(d.ys, 5*pd, 7*pd)
	e.test = newSplit(d.ys, 7*pd, e.n)
	return e
}

// ok: origin o and target o+h usable for fitting.
func (e *env) ok(o, h int) bool {
	return o >= pd && o+h < e.n && !e.og[o] && !e.og[o+h]
}

// walk returns forecasts fc[o] for o+h: for each day from the fourth on,
// fit(end) is called with the first window of that day and returns a
// forecast function used for the origins whose target lies in that day.
// Before the fourth day the shipped forecast is used.
func (e *env) walk(h int, fit func(end int) func(o int) float64) []float64 {
	fc := append([]float64(nil), e.d.mean[hi(h)]...)
	for day := 3; day < e.n/pd; day++ {
		f := fit(day * pd)
		for o := day*pd - h; o < (day+1)*pd-h && o < e.n; o++ {
			fc[o] = f(o)
		}
	}
	return fc
}

// frozen is walk with one fit on days 1-7 for every later day.
func (e *env) frozen(h int, fit func(end int) func(o int) float64) []float64 {
	fc := append([]float64(nil), e.d.mean[hi(h)]...)
	for day := 3; day < 7; day++ {
		f := fit(day * pd)
		for o := day*pd - h; o < (day+1)*pd-h; o++ {
			fc[o] = f(o)
		}
	}
	f := fit(7 * pd)
	for o := 7*pd - h; o < e.n; o++ {
		fc[o] = f(o)
	}
	return fc
}

func hi(h int) int {
	for i, v := range hs {
		if v == h {
			return i
		}
	}
	panic("horizon")
}

// row is one angle's ratios to the better baseline on days 4-7 and 8-14.
type row struct {
	name             string
	tune, late, test [3]float64
}

func (e *env) score(name string, fcs [3][]float64) row {
	r := row{name: name}
	for i, h := range hs {
		r.tune[i] = e.tune.ratio(fcs[i], h)
		r.late[i] = e.late.ratio(fcs[i], h)
		r.test[i] = e.test.ratio(fcs[i], h)
	}
	return r
}

func (r row) String() string {
	return fmt.Sprintf("%-58s days 4-7 %.3f / %.3f / %.3f  days 6-7 %.3f / %.3f / %.3f  days 8-14 %.3f / %.3f / %.3f",
		r.name, r.tune[0], r.tune[1], r.tune[2], r.late[0], r.late[1], r.late[2], r.test[0], r.test[1], r.test[2])
}

func run(d *data) {
	e := newEnv(d)
	e.checkScorer()
	ship := e.score("shipped forecaster", [3][]float64{d.mean[0], d.mean[1], d.mean[2]})
	fmt.Println(ship)
	e.dwellStats()
	e.mixture(ship)
	e.direct(ship)
}

// checkScorer prints the command's line recomputed from the dump, and the
// same ratios under other scalings and masks, to show what they rest on.
func (e *env) checkScorer() {
	d := e.d
	// MASE scale: mean |one-window change| of the total over days 1-7,
	// pairs touching a gap left out.
	g7 := detectGaps(d.ys[:7*pd])
	var sum float64
	var k int
	for t := 1; t < 7*pd; t++ {
		if !g7[t] && !g7[t-1] {
			sum += math.Abs(d.ys[t] - d.ys[t-1])
			k++
		}
	}
	scale := sum / float64(k)
	gaps := 0
	for _, g := range e.test.g {
		if g {
			gaps++
		}
	}
	fmt.Printf("# scorer: %d gap windows, MASE scale %.2f req/s (days 1-7)\n", gaps, scale)
	for i, h := range hs {
		nv, sv, n := e.test.baselines(h)
		var err float64
		for _, t := range e.test.idx(h) {
			err += math.Abs(d.mean[i][t-h] - d.ys[t])
		}
		err /= float64(n)
		fmt.Printf("forecast horizon=%dm sluice=%.3f naive=%.3f seasonal_naive=%.3f coverage_p90=%.2f  (%d windows)\n",
			10*h, err/scale, nv/scale, sv/scale, e.test.cover(d.p90[i], h), n)
	}
	// the target is a ratio, so the scale cancels; the mask is what could
	// move it: score on every window (no gap rule) and on the mask
	// without the day-earlier condition.
	for i, h := range hs {
		var es, ns, ss float64
		for t := 7 * pd; t < e.n; t++ {
			es += math.Abs(d.mean[i][t-h] - d.ys[t])
			ns += math.Abs(d.ys[t-h] - d.ys[t])
			ss += math.Abs(d.ys[t-pd] - d.ys[t])
		}
		var el, nl float64
		for t := 7 * pd; t < e.n; t++ {
			if !e.test.g[t] && !e.test.g[t-h] {
				el += math.Abs(d.mean[i][t-h] - d.ys[t])
				nl += math.Abs(d.ys[t-h] - d.ys[t])
			}
		}
		fmt.Printf("# scorer h=%dm: ratio with the mask %.3f; every window scored %.3f (naive %.0f, seasonal %.0f); mask without the day-earlier rule %.3f\n",
			10*h, e.test.ratio(d.mean[i], h), es/math.Min(ns, ss), ns, ss, el/nl)
	}
}
