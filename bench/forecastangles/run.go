package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
)

// row is one approach's ratios to the better baseline per horizon, on the
// training days (NaN: not shown) and on the scored days.
type row struct {
	name         string
	train, test  [3]float64
	hasTrain     bool
	chosen       string // what was picked on the training days, if anything
	chosenByHorz [3]string
}

// env is what every angle reads.
type env struct {
	tr          *trace
	n, trainEnd int
	train, test split
	og          []bool    // online gaps of the sum (no look-ahead)
	x           []float64 // the sum, gaps carried over
	clients     map[string][]float64
}

func run(w io.Writer, tr *trace, trainDays int) error {
	n, end := len(tr.sum), trainDays*perDay
	if trainDays < 2 || end+perDay > n {
		return fmt.Errorf("%d windows: want more than %d training days and one scored day", n, trainDays)
	}
	e := &env{tr: tr, n: n, trainEnd: end,
		train: split{ys: tr.sum[:end], gaps: forecast.DetectGaps(tr.sum[:end], perDay), lo: perDay, hi: end},
		test:  split{ys: tr.sum, gaps: forecast.DetectGaps(tr.sum, perDay), lo: end, hi: n},
		og:    onlineGaps(tr.sum), clients: map[string][]float64{}}
	e.x = clean(tr.sum, e.og)
	for _, c := range tr.names {
		e.clients[c] = clean(tr.rate[c], e.og)
	}
	fmt.Fprintf(w, "# %d clients, %d windows; ratios to the better of naive and seasonal naive, "+
		"train = days 2-%d, test = days %d-%d\n", len(tr.names), n, trainDays, trainDays+1, n/perDay)
	ref, err := e.reference()
	if err != nil {
		return err
	}
	rows := []row{ref}
	rows = append(rows, e.perClient()...)
	rows = append(rows, e.profiles()...)
	rows = append(rows, e.linear()...)
	rows = append(rows, e.analogs()...)
	tenants, err := e.perTenant()
	if err != nil {
		return err
	}
	rows = append(rows, tenants...)
	rows = append(rows, e.bounds()...)
	e.offsets(w)
	e.recurrence(w)
	rows = append(rows, e.stepFloor(w)...)
	for _, m := range []float64{3, 5} {
		if err := e.onsetSplit(w, 2, m); err != nil {
			return err
		}
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-62s", r.name)
		for i := range horizons {
			if r.hasTrain {
				fmt.Fprintf(w, "  %2dm %.3f (train %.3f)", horizons[i]*10, r.test[i], r.train[i])
			} else {
				fmt.Fprintf(w, "  %2dm %.3f", horizons[i]*10, r.test[i])
			}
		}
		fmt.Fprintln(w)
		if r.chosen != "" {
			fmt.Fprintf(w, "    chosen: %s\n", r.chosen)
		}
	}
	return nil
}

// reference is internal/forecast as `sluice bench forecast` scores it.
func (e *env) reference() (row, error) {
	r := row{name: "reference: internal/forecast (sluice bench forecast)"}
	hs := make([]time.Duration, len(horizons))
	for i, h := range horizons {
		hs[i] = time.Duration(h*window) * time.Second
	}
	ev, err := forecast.Evaluate(e.tr.sum, time.Unix(0, 0), forecast.Config{Interval: window * time.Second}, e.trainEnd/perDay, hs)
	if err != nil {
		return r, err
	}
	for i, s := range ev.Scores {
		r.test[i] = s.Sluice / min(s.Naive, s.SeasonalNaive)
	}
	return r, nil
}

// score fills a row's horizon i from forecasts fc (fc[o] for o+h).
func (e *env) score(r *row, i int, fc []float64) {
	h := horizons[i]
	r.test[i] = e.test.mae(fc, h) / e.test.baseline(h)
	r.train[i] = e.train.mae(fc, h) / e.train.baseline(h)
}

// profiles: the last value plus the mean (median) change of its daily
// slot on the training days (angle c, and d for the median).
func (e *env) profiles() []row {
	// Learned on the training days, so no training-days ratio is shown.
	rows := []row{{name: "(c) last + slot's mean change, days 1-7"},
		{name: "(c,d) last + slot's median change, days 1-7"}}
	for i, h := range horizons {
		for j := range rows {
			p := slotProfile(e.x, e.og, h, e.trainEnd, j == 1)
			fc := make([]float64, e.n)
			for o := range fc {
				fc[o] = math.Max(e.x[o]+p[o%perDay], 0)
			}
			e.score(&rows[j], i, fc)
		}
	}
	return rows
}

// analogs: nearest-neighbour median change (angle d, nonlinear).
func (e *env) analogs() []row {
	r := row{name: "(d) analog: median change of 100 nearest past situations", hasTrain: true}
	for i, h := range horizons {
		e.score(&r, i, analog(e.x, e.og, h, 100))
	}
	return []row{r}
}

// bounds see the answers: parts of the sum known exactly.
func (e *env) bounds() []row {
	big := e.tr.rate[e.tr.names[0]]
	rest := make([]float64, e.n)
	for t := range rest {
		rest[t] = e.tr.sum[t] - big[t]
	}
	name := e.tr.names[0]
	rows := []row{{name: "bound: " + name + " known exactly, the rest naive"},
		{name: "bound: the rest known exactly, " + name + " naive"}}
	shares := []float64{0.1, 0.2, 0.3}
	for _, s := range shares {
		rows = append(rows, row{name: fmt.Sprintf("bound: naive + %.0f%% of %s's true change", 100*s, name)})
	}
	for i, h := range horizons {
		fcs := make([][]float64, len(rows))
		for j := range fcs {
			fcs[j] = make([]float64, e.n)
		}
		for o := 0; o+h < e.n; o++ {
			fcs[0][o] = big[o+h] + rest[o]
			fcs[1][o] = rest[o+h] + big[o]
			for k, s := range shares {
				fcs[2+k][o] = e.tr.sum[o] + s*(big[o+h]-big[o])
			}
		}
		for j := range rows {
			e.score(&rows[j], i, fcs[j])
		}
	}
	return rows
}

// offsets prints how the largest client's changes and the others' relate
// on the scored days: their correlation over each horizon, the mean
// absolute change of each and of the sum, and the 10-minute lagged
// correlations (a leading indicator would show there).
func (e *env) offsets(w io.Writer) {
	name := e.tr.names[0]
	big := e.tr.rate[name]
	rest := make([]float64, e.n)
	for t := range rest {
		rest[t] = e.tr.sum[t] - big[t]
	}
	g := e.test.gaps
	for _, h := range horizons {
		var db, dr []float64
		for t := e.trainEnd; t < e.n; t++ {
			if !g[t] && !g[t-h] && !g[t-perDay] {
				db, dr = append(db, big[t]-big[t-h]), append(dr, rest[t]-rest[t-h])
			}
		}
		var mb, mr, ms float64
		for i := range db {
			mb, mr, ms = mb+math.Abs(db[i]), mr+math.Abs(dr[i]), ms+math.Abs(db[i]+dr[i])
		}
		k := float64(len(db))
		fmt.Fprintf(w, "# %dm changes, days %d-%d: corr(%s, others) %.2f; mean |change| %s %.0f, others %.0f, sum %.0f req/s\n",
			h*10, e.trainEnd/perDay+1, e.n/perDay, name, corr(db, dr), name, mb/k, mr/k, ms/k)
	}
	var bPrev, rPrev, bNext, rNext []float64
	for t := e.trainEnd; t+1 < e.n; t++ {
		if !g[t-1] && !g[t] && !g[t+1] {
			bPrev, rPrev = append(bPrev, big[t]-big[t-1]), append(rPrev, rest[t]-rest[t-1])
			bNext, rNext = append(bNext, big[t+1]-big[t]), append(rNext, rest[t+1]-rest[t])
		}
	}
	fmt.Fprintf(w, "# lagged 10m changes, days %d-%d: corr(%s then others) %.2f, corr(others then %s) %.2f, corr(%s then %s) %.2f\n",
		e.trainEnd/perDay+1, e.n/perDay, name, corr(bPrev, rNext), name, corr(rPrev, bNext), name, name, corr(bPrev, bNext))
}

func corr(a, b []float64) float64 {
	ma, mb := sumOf(a)/float64(len(a)), sumOf(b)/float64(len(b))
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}
