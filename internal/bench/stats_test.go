package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 90: 90, 99: 99, 100: 100, 0.5: 1, 99.1: 100} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%g = %d, want %d", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty percentile")
	}
	three := []time.Duration{10, 20, 30}
	if percentile(three, 50) != 20 || percentile(three, 99) != 30 || percentile(three, 33) != 10 {
		t.Error("three-sample percentiles")
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond})
	want := Summary{Count: 4, Mean: 4, P50: 2, P90: 10, P99: 10, Max: 10}
	if s != want {
		t.Errorf("got %+v want %+v", s, want)
	}
	if summarize(nil) != (Summary{}) {
		t.Error("empty summary")
	}
}

func TestHistogramAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var exact []time.Duration
	for range 20000 {
		d := time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
		h.add(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, p := range []float64{50, 90, 99} {
		got, want := float64(h.quantile(p)), float64(percentile(exact, p))
		if math.Abs(got-want)/want > 0.02 {
			t.Errorf("p%g = %v, exact %v", p, time.Duration(got), time.Duration(want))
		}
	}
	if h.summary().Max != ms(exact[len(exact)-1]) {
		t.Error("max is not exact")
	}
	// Index and midpoint agree over the whole range, bucket by bucket.
	for _, v := range []uint64{0, 1, 127, 128, 129, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("index %d for %d", i, v)
		}
		if mid := histMid(i); histIndex(mid) != i {
			t.Errorf("bucket %d: midpoint %d falls in bucket %d", i, mid, histIndex(mid))
		}
	}
}

func TestJainIndex(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5, 5, 5, 5}, 1},
		{[]float64{1, 0, 0, 0}, 0.25},
		{[]float64{0, 0}, 1},
		{[]float64{1, 2, 3}, 36.0 / 42},
		{[]float64{-1, 1}, 0.5},
	} {
		if got := JainIndex(tt.xs); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("JainIndex(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}
