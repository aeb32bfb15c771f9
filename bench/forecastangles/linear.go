package main

import "math"

// solve solves A·x = b by Gaussian elimination with partial pivoting (A
// and b are overwritten).
func solve(a [][]float64, b []float64) []float64 {
	n := len(b)
	for i := range n {
		p := i
		for r := i + 1; r < n; r++ {
			if math.Abs(a[r][i]) > math.Abs(a[p][i]) {
				p = r
			}
		}
		a[i], a[p], b[i], b[p] = a[p], a[i], b[p], b[i]
		if math.Abs(a[i][i]) < 1e-12 {
			a[i][i] = 1e-12
		}
		for r := range n {
			if r == i || a[r][i] == 0 {
				continue
			}
			f := a[r][i] / a[i][i]
			for c := i; c < n; c++ {
				a[r][c] -= f * a[i][c]
			}
			b[r] -= f * b[i]
		}
	}
	x := make([]float64, n)
	for i := range x {
		x[i] = b[i] / a[i][i]
	}
	return x
}

// wls is weighted least squares with a tiny ridge (so that a constant
// feature column cannot make the system singular).
func wls(xs [][]float64, ys, w []float64) []float64 {
	k := len(xs[0])
	a := make([][]float64, k)
	for i := range a {
		a[i] = make([]float64, k)
	}
	b := make([]float64, k)
	for i, x := range xs {
		for p := range k {
			wp := w[i] * x[p]
			b[p] += wp * ys[i]
			for q := p; q < k; q++ {
				a[p][q] += wp * x[q]
			}
		}
	}
	for p := range k {
		for q := range p {
			a[p][q] = a[q][p]
		}
		a[p][p] += 1e-6 * (a[p][p] + 1)
	}
	return solve(a, b)
}

// ols is least squares: the fit for mean squared error.
func ols(xs [][]float64, ys []float64) []float64 {
	w := make([]float64, len(ys))
	for i := range w {
		w[i] = 1
	}
	return wls(xs, ys, w)
}

// lad is least absolute deviations (the fit for the error MASE measures),
// by iteratively reweighted least squares.
func lad(xs [][]float64, ys []float64, iters int) []float64 {
	beta := ols(xs, ys)
	w := make([]float64, len(ys))
	for range iters {
		for i, x := range xs {
			w[i] = 1 / math.Max(math.Abs(ys[i]-dot(beta, x)), 1e-3)
		}
		beta = wls(xs, ys, w)
	}
	return beta
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// featureSet names the inputs of a linear forecast of the h-window change.
type featureSet struct {
	own, yday, prof, clients, cv bool
}

func (f featureSet) String() string {
	s := ""
	for _, p := range []struct {
		on   bool
		name string
	}{{f.own, "own"}, {f.yday, "yday"}, {f.prof, "prof"}, {f.clients, "clients"}, {f.cv, "cv"}} {
		if p.on {
			if s != "" {
				s += "+"
			}
			s += p.name
		}
	}
	return s
}

// inputs are what the linear forecasts may read (all gap-cleaned).
type inputs struct {
	x         []float64   // the sum
	clients   [][]float64 // the 8 largest clients' rates
	cvs       [][]float64 // the 3 largest clients' inter-arrival CV
	profMean  []float64   // per daily slot, the mean h-window change on the training days
	profMedin []float64   // and the median
}

// features are the inputs at origin o for horizon h: own = changes of
// the sum over 1, 3, 6 windows and from its 6 h and 24 h means; yday =
// yesterday's change over the same hour; prof = the slot profiles of the
// change; clients = the 8 largest clients' changes over 1 and 6 windows;
// cv = the 3 largest clients' CV and its last change.
func (in *inputs) features(f featureSet, o, h int) []float64 {
	x := in.x
	v := []float64{1}
	if f.own {
		v = append(v, x[o]-x[o-1], x[o]-x[o-3], x[o]-x[o-6],
			x[o]-sumOf(x[o-35:o+1])/36, x[o]-sumOf(x[o-143:o+1])/144)
	}
	if f.yday {
		v = append(v, x[o+h-perDay]-x[o-perDay])
	}
	if f.prof {
		v = append(v, in.profMean[o%perDay], in.profMedin[o%perDay])
	}
	if f.clients {
		for _, c := range in.clients {
			v = append(v, c[o]-c[o-1], c[o]-c[o-6])
		}
	}
	if f.cv {
		for _, c := range in.cvs {
			v = append(v, c[o], c[o]-c[o-1])
		}
	}
	return v
}
