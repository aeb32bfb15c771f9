// Command forecastangles scores, offline, forecasting approaches that
// internal/forecast does not use, on a ServeGen folder summed as `sluice
// bench forecast` sums it, with the same gap mask and the same scoring:
// mean absolute error at 10, 30 and 60 minutes on the days after the
// training days, as a ratio to the better of the last value and the same
// window a day earlier. Everything tuned is tuned on the training days
// (scored on days 2-7 where a row shows "train"); rows marked "bound" see
// the answers and only say how far a family of models could go.
// docs/BENCHMARKS.md §10 ("Four more angles") holds its output and reading.
//
//	go run ./bench/forecastangles -servegen ../shared/traces/servegen/language/m-mid
//
// Single-threaded: a few seconds, under 100 MB.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

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
	rows := map[string][][3]float64{}
	for _, name := range files {
		rs, err := readCSV(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		c := strings.TrimSuffix(filepath.Base(name), "-trace.csv")
		rows[c] = rs
		tr.names = append(tr.names, c)
		for _, r := range rs {
			n = max(n, int(r[0])/window+1)
		}
	}
	tr.sum = make([]float64, n)
	for c, rs := range rows {
		tr.rate[c], tr.cv[c] = make([]float64, n), make([]float64, n)
		for _, r := range rs {
			i := int(r[0]) / window
			tr.rate[c][i], tr.cv[c][i] = r[1], r[2]
			tr.sum[i] += r[1]
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

// readCSV reads window_start_s, rate and cv of each row.
func readCSV(name string) ([][3]float64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	var out [][3]float64
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("%d columns, want window_start_s,rate,cv,...", len(rec))
		}
		var r [3]float64
		for i := range r {
			if r[i], err = strconv.ParseFloat(strings.TrimSpace(rec[i]), 64); err != nil && i < 2 {
				return nil, fmt.Errorf("column %d: %w", i+1, err)
			}
		}
		if r[0] < 0 || r[0] > 1e8 {
			return nil, fmt.Errorf("window_start_s %v out of range", r[0])
		}
		out = append(out, r)
	}
}

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
