package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// The mixture's median, not its mean: with a switch less likely than not
// the median moves only part of the way toward the other level.
func TestMixMedianSolvesTheMixturesHalfPoint(t *testing.T) {
	es := make([]float64, 2001)
	for i := range es {
		es[i] = -1 + float64(i)/1000 // uniform on [-1, 1]
	}
	sort.Float64s(es)
	if m := mixMedian(es, 0, 50); math.Abs(m) > 0.01 {
		t.Fatalf("p=0: median %.3f, want 0", m)
	}
	// 0.7 F(m) = 0.5 with the step far away: F(m) = 5/7, m = 2*5/7 - 1
	if m, want := mixMedian(es, 0.3, 50), 2.0*5/7-1; math.Abs(m-want) > 0.01 {
		t.Fatalf("p=0.3, d=50: median %.3f, want %.3f", m, want)
	}
	if m, want := mixMedian(es, 0.3, -50), -(2.0*5/7 - 1); math.Abs(m-want) > 0.01 {
		t.Fatalf("p=0.3, d=-50: median %.3f, want %.3f", m, want)
	}
	// over one half the other level is the median's side
	if m := mixMedian(es, 0.6, 50); m < 40 {
		t.Fatalf("p=0.6, d=50: median %.3f, want near the step", m)
	}
}

// The boosting's leaves are medians: a step with skewed outliers is
// recovered where a least-squares fit would be pulled by them.
func TestGBMFitsTheConditionalMedian(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var xs [][]float64
	var ys []float64
	for range 600 {
		x := r.Float64()*2 - 1
		y := 0.0
		if x > 0 {
			y = 1
		}
		y += 0.1 * r.NormFloat64()
		if r.Float64() < 0.3 {
			y += 10 // 30% outliers, all one way: the mean moves by 3, the median little
		}
		xs = append(xs, []float64{x, r.Float64()})
		ys = append(ys, y)
	}
	m := fitGBM(xs, ys, gbmConfig{rounds: 200, depth: 1, minLeaf: 20, nu: 0.1})
	for _, c := range []struct{ x, want float64 }{{-0.5, 0}, {0.5, 1}} {
		if got := m.predict([]float64{c.x, 0.5}); math.Abs(got-c.want) > 0.25 {
			t.Fatalf("x=%.1f: %.3f, want %.1f (the conditional median)", c.x, got, c.want)
		}
	}
}
