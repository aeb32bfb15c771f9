package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const pd = 144 // 10-minute windows per day

// hs are the scored horizons in windows (10, 30, 60 min).
var hs = []int{1, 3, 6}

// data is what ../dominant dumps: the total, the shipped forecaster's mean
// and p90 per horizon (mean[i][o] is the forecast made after window o for
// o+hs[i]), and every client's rate.
type data struct {
	ys        []float64
	mean, p90 [][]float64
	names     []string
	clients   [][]float64
}

func load(dir string) (*data, error) {
	d := &data{mean: make([][]float64, len(hs)), p90: make([][]float64, len(hs))}
	err := eachLine(filepath.Join(dir, "fc.csv"), func(f []string) error {
		if len(f) != 2+2*len(hs) {
			return fmt.Errorf("fc.csv: %d fields", len(f))
		}
		v, err := floats(f[1:])
		if err != nil {
			return err
		}
		d.ys = append(d.ys, v[0])
		for i := range hs {
			d.mean[i] = append(d.mean[i], v[1+2*i])
			d.p90[i] = append(d.p90[i], v[2+2*i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(dir, "clients.csv"), func(f []string) error {
		v, err := floats(f[1:])
		if err != nil {
			return err
		}
		d.names = append(d.names, strings.TrimSuffix(f[0], "-trace"))
		d.clients = append(d.clients, v)
		return nil
	})
	return d, err
}

func eachLine(name string, fn func([]string) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if err := fn(strings.Split(strings.TrimSpace(sc.Text()), ",")); err != nil {
			return err
		}
	}
	return sc.Err()
}

func floats(f []string) ([]float64, error) {
	out := make([]float64, len(f))
	for i, s := range f {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s)
	if m%2 == 1 {
		return s[m/2]
	}
	return (s[m/2-1] + s[m/2]) / 2
}

// detectGaps is the command's scoring mask (bench.DetectGaps, as h.py):
// under 5% of the median of the same window 1-2 days either side.
func detectGaps(ys []float64) []bool {
	g := make([]bool, len(ys))
	for i, y := range ys {
		var nb []float64
		for _, j := range []int{i - 2*pd, i - pd, i + pd, i + 2*pd} {
			if j >= 0 && j < len(ys) {
				nb = append(nb, ys[j])
			}
		}
		if len(nb) > 0 {
			g[i] = y < 0.05*median(nb)
		}
	}
	return g
}

// onlineGaps is the forecaster's causal gap rule (as h.py's online_gaps).
func onlineGaps(ys []float64) []bool {
	g := make([]bool, len(ys))
	plain, started, run := 0.0, false, 0
	for t, x := range ys {
		low := started && x < 0.05*plain
		ylow := started && t >= pd && ys[t-pd] < 0.05*plain
		if low && !ylow {
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

// clean replaces the windows g marks by the last value before them.
func clean(xs []float64, g []bool) []float64 {
	out := make([]float64, len(xs))
	last := 0.0
	for i, x := range xs {
		if !g[i] {
			last = x
		}
		out[i] = last
	}
	return out
}

// split scores as the command does on windows [lo, hi): the gap mask is
// computed from ys[:hi] alone, a target t is scored at horizon h only if
// t, t-h and t-pd are not gaps, and the ratio is to the better of naive
// and seasonal naive on the same windows.
type split struct {
	ys     []float64
	g      []bool
	lo, hi int
}

func newSplit(ys []float64, lo, hi int) split {
	return split{ys: ys[:hi], g: detectGaps(ys[:hi]), lo: lo, hi: hi}
}

func (s split) idx(h int) []int {
	var out []int
	for t := max(s.lo, h, pd); t < s.hi; t++ {
		if !s.g[t] && !s.g[t-h] && !s.g[t-pd] {
			out = append(out, t)
		}
	}
	return out
}

// ratio of fc's MAE (fc[o] forecasts o+h) to the better baseline's.
func (s split) ratio(fc []float64, h int) float64 {
	var e, n, sn float64
	for _, t := range s.idx(h) {
		e += math.Abs(fc[t-h] - s.ys[t])
		n += math.Abs(s.ys[t-h] - s.ys[t])
		sn += math.Abs(s.ys[t-pd] - s.ys[t])
	}
	return e / min(n, sn)
}

// baselines returns naive and seasonal-naive MAE on the scored windows.
func (s split) baselines(h int) (naive, seasonal float64, n int) {
	ii := s.idx(h)
	for _, t := range ii {
		naive += math.Abs(s.ys[t-h] - s.ys[t])
		seasonal += math.Abs(s.ys[t-pd] - s.ys[t])
	}
	return naive / float64(len(ii)), seasonal / float64(len(ii)), len(ii)
}

func (s split) cover(p []float64, h int) float64 {
	ii := s.idx(h)
	c := 0
	for _, t := range ii {
		if s.ys[t] <= p[t-h] {
			c++
		}
	}
	return float64(c) / float64(len(ii))
}
