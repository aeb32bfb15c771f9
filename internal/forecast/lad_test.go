package forecast

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// momentumSeries is a rate whose changes carry on (each 10-minute change
// is 0.7 of the last plus noise, pulled weakly back to 1000; it stays well above zero): what the
// next hour brings is in the recent changes, which no other member reads.
func momentumSeries(seed uint64) func(i int) float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	var xs []float64
	x, d := 1000.0, 0.0
	return func(i int) float64 {
		for len(xs) <= i {
			d = 0.7*d + 20*rng.NormFloat64() - 0.01*(x-1000)
			x = max(x+d, 0)
			xs = append(xs, x)
		}
		return xs[i]
	}
}

// On a series with momentum the LAD member learns the pattern online: at
// every horizon it has the least error of the members (the last value
// included), and at 10 and 30 minutes, where its lead is wide, the
// forecast leans on it and beats the last value clearly. (At 60 minutes
// its lead, 10%, is within the noise of one hour's errors, which is all
// the combiner remembers: the forecast there is not asserted.)
func TestLADMemberWinsOnMomentum(t *testing.T) {
	f := mustNew(t, Config{Interval: 10 * time.Minute})
	rate := momentumSeries(7)
	const days, from = 10, 5 * 144
	for _, s := range []int{1, 3, 6} {
		var errF float64
		var errC [nCand]float64
		feed(f, 0, days*144, rate, func(i int) {
			if i < from || i+s >= days*144 {
				return
			}
			md := f.series[m].requests
			// The members as the forecast for interval i+s combines them.
			c := md.candidates(&f.k, &md.horizons[horizonIndex(md, s)], s, t0.Add(time.Duration(i+s)*10*time.Minute).Unix())
			for j := range c {
				errC[j] += math.Abs(c[j] - rate(i+s))
			}
			fc, _ := f.Forecast(m, time.Duration(s)*10*time.Minute)
			errF += math.Abs(fc.Requests.Mean - rate(i+s))
		})
		f = mustNew(t, Config{Interval: 10 * time.Minute})
		t.Logf("%d min: errors relative to the last value's: forecast %.3f, members %.3f", 10*s, errF/errC[candNaive], func() (r [nCand]float64) {
			for j := range r {
				r[j] = errC[j] / errC[candNaive]
			}
			return r
		}())
		for j := range errC {
			if j != candLAD && errC[j] <= errC[candLAD] {
				t.Errorf("%d min: member %d's error %.0f, the LAD member's %.0f: want the LAD member least", 10*s, j, errC[j], errC[candLAD])
			}
		}
		if s <= 3 && errF > 0.9*errC[candNaive] {
			t.Errorf("%d min: forecast error %.3f of the last value's, want <= 0.9", 10*s, errF/errC[candNaive])
		}
	}
}

func horizonIndex(md *model, steps int) int {
	for i, h := range md.horizons {
		if h.steps == steps {
			return i
		}
	}
	return len(md.horizons) - 1
}

// A constant series (every feature zero) leaves the fit finite and the
// forecast the constant.
func TestLADFitOnAConstantSeries(t *testing.T) {
	f := mustNew(t, Config{Interval: 10 * time.Minute})
	feed(f, 0, 3*144, func(int) float64 { return 5 }, nil)
	if fc, _ := f.Forecast(m, time.Hour); math.Abs(fc.Requests.Mean-5) > 1e-6 {
		t.Errorf("forecast %v, want 5", fc.Requests.Mean)
	}
	for _, h := range f.series[m].requests.horizons {
		for _, b := range h.lad.beta {
			if math.IsNaN(b) || math.IsInf(b, 0) {
				t.Fatalf("coefficients %v", h.lad.beta)
			}
		}
	}
}
