// Command forecastangles scores, offline, forecasting approaches that
// internal/forecast does not use, on a ServeGen folder summed as `sluice
// bench forecast` sums it, with the same gap mask and the same scoring:
// mean absolute error at 10, 30 and 60 minutes on the days after the
// training days, as a ratio to the better of the last value and the same
// window a day earlier. Everything tuned is tuned on the training days
// (scored on days 2-7 where a row shows "train"); rows marked "bound" see
// the answers and only say how far a family of models could go. Rows
// marked "floor" and the "# split by" lines (steps.go) divide the error
// between horizons that hold the onset of a level step of the largest
// client and those that do not; the "# recurrence", "# dips" and "# bumps"
// lines (recur.go) ask whether those steps repeat in time or reverse.
// docs/BENCHMARKS.md §10 ("Four more angles", "Where the hour-ahead error
// sits", "The dominant client's steps") holds its output and reading.
//
//	go run ./bench/forecastangles -servegen ../shared/traces/servegen/language/m-mid
//
// Single-threaded: about 10-15 s (most of it internal/forecast run per
// client), under 100 MB.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/forecast"
)

const (
	window = 600 // seconds per ServeGen window
	perDay = 24 * 3600 / window
)

// horizons in windows: 10, 30 and 60 minutes.
var horizons = []int{1, 3, 6}

func main() {
	dir := flag.String("servegen", "../shared/traces/servegen/language/m-mid", "ServeGen folder: one CSV per client")
	trainDays := flag.Int("train-days", 7, "days tuned on; the rest are scored")
	flag.Parse()
	tr, err := load(*dir)
	if err == nil {
		err = run(os.Stdout, tr, *trainDays)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "forecastangles:", err)
		os.Exit(1)
	}
}

// trace is a ServeGen folder: per client its rate and inter-arrival CV
// per window (zero where a client has no row), clients by volume, largest
// first.
type trace struct {
	names    []string
	rate, cv map[string][]float64
	sum      []float64
}

func load(dir string) (*trace, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no CSV files (%v)", dir, err)
	}
	tr := &trace{rate: map[string][]float64{}, cv: map[string][]float64{}}
	n := 0
	rows := map[string][]bench.ServeGenWindow{}
	for _, name := range files {
		ws, err := readServeGen(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c := strings.TrimSuffix(filepath.Base(name), "-trace.csv")
		rows[c] = ws
		tr.names = append(tr.names, c)
		for _, w := range ws {
			n = max(n, windowOf(w)+1)
		}
	}
	tr.sum = make([]float64, n)
	for c, ws := range rows {
		tr.rate[c], tr.cv[c] = make([]float64, n), make([]float64, n)
		for _, w := range ws {
			i := windowOf(w)
			tr.rate[c][i], tr.cv[c][i] = w.Rate, w.CV
			tr.sum[i] += w.Rate
		}
	}
	vol := func(c string) float64 { return sumOf(tr.rate[c]) }
	slices.SortStableFunc(tr.names, func(a, b string) int {
		if va, vb := vol(a), vol(b); va != vb {
			return map[bool]int{true: -1, false: 1}[va > vb]
		}
		return strings.Compare(a, b)
	})
	return tr, nil
}

// readServeGen reads one client file with the gateway's own parser.
func readServeGen(name string) ([]bench.ServeGenWindow, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bench.ParseServeGenCSV(f)
}

// windowOf is the index of w's window in the trace.
func windowOf(w bench.ServeGenWindow) int { return int(w.Start / (window * time.Second)) }

// split is what a row is scored on: the series, its gap mask, and the
// targets [lo, hi).
type split struct {
	ys     []float64
	gaps   []bool
	lo, hi int
}

// mae is the mean absolute error of fc[o] (the forecast made at o for
// o+h) over the split's targets, skipping a target when it, its origin or
// the same window a day earlier is a gap (forecast.Evaluate's rule).
func (s split) mae(fc []float64, h int) float64 {
	var sum float64
	var n int
	for t := max(s.lo, h, perDay); t < s.hi; t++ {
		if s.gaps[t] || s.gaps[t-h] || s.gaps[t-perDay] {
			continue
		}
		sum += math.Abs(fc[t-h] - s.ys[t])
		n++
	}
	return sum / float64(n)
}

// baseline is the better of the last value and the same window a day
// earlier on the split.
func (s split) baseline(h int) float64 {
	return min(s.mae(forecasts(s.ys, naive, h), h), s.mae(forecasts(s.ys, snaive, h), h))
}

// onlineGaps is internal/forecast's online rule applied to the sum: a
// window under 5% of a level with a 10-minute half-life, unless the same
// window a day earlier was as low, for at most 4 h. On m-mid it marks
// exactly the windows DetectGaps marks, without looking ahead.
func onlineGaps(ys []float64) []bool {
	g := make([]bool, len(ys))
	var plain float64
	started, run := false, 0
	for t, x := range ys {
		low := started && x < forecast.GapShare*plain
		yLow := started && t >= perDay && ys[t-perDay] < forecast.GapShare*plain
		if low && !yLow {
			run++
		} else {
			run = 0
		}
		g[t] = run > 0 && run <= 24
		if !g[t] {
			if !started {
				plain, started = x, true
			}
			plain += 0.5 * (x - plain)
		}
	}
	return g
}

// clean carries the last value that was not a gap over the gaps.
func clean(xs []float64, gaps []bool) []float64 {
	out := make([]float64, len(xs))
	var last float64
	for t, x := range xs {
		if !gaps[t] {
			last = x
		}
		out[t] = last
	}
	return out
}

func sumOf(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}
