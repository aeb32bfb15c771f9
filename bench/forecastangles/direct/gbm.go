package main

import (
	"math"
	"sort"
)

// gbm is least-absolute-deviation gradient boosting (Friedman's
// LAD_TreeBoost): each round fits a small regression tree by least squares
// to the signs of the residuals and sets each leaf to the median residual
// in it, so the model estimates the conditional median, which minimises
// an absolute error such as MASE.
type gbm struct {
	f0    float64
	nu    float64
	trees []*node
}

type node struct {
	feat        int
	thr         float64
	left, right *node
	val         float64
	leaf        bool
}

type gbmConfig struct {
	rounds, depth, minLeaf int
	nu                     float64
}

func fitGBM(x [][]float64, y []float64, c gbmConfig) *gbm {
	n := len(y)
	m := &gbm{f0: median(y), nu: c.nu}
	if n == 0 {
		return m
	}
	nf := len(x[0])
	// presorted index per feature
	order := make([][]int, nf)
	for f := range nf {
		o := make([]int, n)
		for i := range o {
			o[i] = i
		}
		sort.Slice(o, func(a, b int) bool { return x[o[a]][f] < x[o[b]][f] })
		order[f] = o
	}
	pred := make([]float64, n)
	for i := range pred {
		pred[i] = m.f0
	}
	r := make([]float64, n)
	g := make([]float64, n)
	in := make([]int32, n) // node id each sample is in while growing
	for range c.rounds {
		for i := range n {
			r[i] = y[i] - pred[i]
			switch {
			case r[i] > 0:
				g[i] = 1
			case r[i] < 0:
				g[i] = -1
			default:
				g[i] = 0
			}
		}
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		t := grow(x, g, r, order, all, in, c.depth, c.minLeaf, 1)
		m.trees = append(m.trees, t)
		for i := range n {
			pred[i] += c.nu * t.eval(x[i])
		}
	}
	return m
}

func (m *gbm) predict(x []float64) float64 {
	p := m.f0
	for _, t := range m.trees {
		p += m.nu * t.eval(x)
	}
	return p
}

func (t *node) eval(x []float64) float64 {
	for !t.leaf {
		if x[t.feat] <= t.thr {
			t = t.left
		} else {
			t = t.right
		}
	}
	return t.val
}

// grow splits the samples idx (all marked id in in[]) by the least-squares
// best split on g, to depth, with at least minLeaf samples per side.
func grow(x [][]float64, g, r []float64, order [][]int, idx []int, in []int32, depth, minLeaf int, id int32) *node {
	leafVal := func() *node {
		rs := make([]float64, len(idx))
		for k, i := range idx {
			rs[k] = r[i]
		}
		return &node{leaf: true, val: median(rs)}
	}
	if depth == 0 || len(idx) < 2*minLeaf {
		return leafVal()
	}
	for _, i := range idx {
		in[i] = id
	}
	var tot float64
	for _, i := range idx {
		tot += g[i]
	}
	n := float64(len(idx))
	best, bf, bthr := 0.0, -1, 0.0
	for f, o := range order {
		var sl float64
		k, prev := 0, -1
		for _, i := range o {
			if in[i] != id {
				continue
			}
			if prev >= 0 && k >= minLeaf && len(idx)-k >= minLeaf && x[prev][f] != x[i][f] {
				kl := float64(k)
				gain := sl*sl/kl + (tot-sl)*(tot-sl)/(n-kl) - tot*tot/n
				if gain > best {
					best, bf, bthr = gain, f, (x[prev][f]+x[i][f])/2
				}
			}
			sl += g[i]
			k++
			prev = i
		}
	}
	if bf < 0 {
		return leafVal()
	}
	var li, ri []int
	for _, i := range idx {
		if x[i][bf] <= bthr {
			li = append(li, i)
		} else {
			ri = append(ri, i)
		}
	}
	nd := &node{feat: bf, thr: bthr}
	nd.left = grow(x, g, r, order, li, in, depth-1, minLeaf, 2*id)
	nd.right = grow(x, g, r, order, ri, in, depth-1, minLeaf, 2*id+1)
	return nd
}

// lad fits y ≈ x·β by least absolute deviations (IRLS with a small ridge).
func lad(x [][]float64, y []float64, ridge float64) []float64 {
	k := len(x[0])
	w := make([]float64, len(y))
	for i := range w {
		w[i] = 1
	}
	var beta []float64
	for it := 0; it < 30; it++ {
		a := make([][]float64, k)
		b := make([]float64, k)
		for p := range a {
			a[p] = make([]float64, k)
			a[p][p] = ridge
		}
		for i, xi := range x {
			for p := range k {
				b[p] += w[i] * xi[p] * y[i]
				for q := range k {
					a[p][q] += w[i] * xi[p] * xi[q]
				}
			}
		}
		beta = solve(a, b)
		var mr float64
		res := make([]float64, len(y))
		for i, xi := range x {
			res[i] = math.Abs(y[i] - dot(beta, xi))
			mr += res[i]
		}
		fl := math.Max(1e-9, 1e-3*mr/float64(len(y)))
		for i := range w {
			w[i] = 1 / math.Max(res[i], fl)
		}
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

func solve(a [][]float64, b []float64) []float64 {
	n := len(b)
	m := make([][]float64, n)
	for i := range m {
		m[i] = append(append([]float64(nil), a[i]...), b[i])
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		if math.Abs(m[c][c]) < 1e-12 {
			return make([]float64, n)
		}
		for r := range n {
			if r != c {
				f := m[r][c] / m[c][c]
				for k := c; k <= n; k++ {
					m[r][k] -= f * m[c][k]
				}
			}
		}
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = m[i][n] / m[i][i]
	}
	return out
}
