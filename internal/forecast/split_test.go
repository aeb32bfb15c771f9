package forecast

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// stepsAndCycle are two tenants of one model, 14 days of 10-minute rates:
// "big" jumps between levels at random moments (about one step in 30
// intervals) and "cyc" follows the same daily sine every day. In their sum
// the steps blur the daily shape, which the cyclic tenant alone shows.
func stepsAndCycle(seed uint64) ([][]float64, []string) {
	rng := rand.New(rand.NewPCG(seed, 2))
	const n = 14 * 144
	big, cyc := make([]float64, n), make([]float64, n)
	level := 1000.0
	for i := range n {
		if rng.Float64() < 1.0/30 {
			level = 400 + 1200*rng.Float64()
		}
		big[i] = level + 10*rng.NormFloat64()
		cyc[i] = 400 + 350*math.Sin(2*math.Pi*float64(i)/144) + 10*rng.NormFloat64()
	}
	return [][]float64{big, cyc}, []string{"big", "cyc"}
}

// A model's total is forecast both as one series and as its busiest
// tenant's forecast plus the rest's, weighed by their record: fed as
// tenants, the hour-ahead error of the total is well under what the same
// forecaster makes of the summed series alone (without the split the two
// are the same forecast), at 10 minutes it stays under the last value's,
// and the p90 still covers about 90%.
func TestModelTotalSplitsItsBusiestTenant(t *testing.T) {
	hs := []time.Duration{10 * time.Minute, time.Hour}
	cfg := Config{Interval: 10 * time.Minute}
	for _, seed := range []uint64{1, 2, 3} {
		parts, names := stepsAndCycle(seed)
		whole, err := EvaluateTenants(parts, nil, t0, cfg, 7, hs)
		if err != nil {
			t.Fatal(err)
		}
		split, err := EvaluateTenants(parts, names, t0, cfg, 7, hs)
		if err != nil {
			t.Fatal(err)
		}
		w, s := whole.Scores, split.Scores
		t.Logf("seed %d: 10 min %.3f -> %.3f (naive %.3f), 60 min %.3f -> %.3f (naive %.3f), coverage %.2f %.2f",
			seed, w[0].Sluice, s[0].Sluice, s[0].Naive, w[1].Sluice, s[1].Sluice, s[1].Naive, s[0].CoverageP90, s[1].CoverageP90)
		if s[1].Sluice > 0.9*w[1].Sluice {
			t.Errorf("seed %d: 60 min error with tenants %.3f, want under 0.9 of the total alone's %.3f", seed, s[1].Sluice, w[1].Sluice)
		}
		if s[0].Sluice > s[0].Naive {
			t.Errorf("seed %d: 10 min error with tenants %.3f, want no more than the last value's %.3f", seed, s[0].Sluice, s[0].Naive)
		}
		for _, sc := range s {
			if sc.CoverageP90 < 0.8 || sc.CoverageP90 > 0.97 {
				t.Errorf("seed %d: %v p90 coverage %.2f, want about 0.9", seed, sc.Horizon, sc.CoverageP90)
			}
		}
	}
}

// The lead passes to a tenant that becomes more than leadSwitch times as
// busy (not to one merely busier), the rest series starting afresh, and a
// restore drops the split, which comes back from the restored series.
func TestSplitLeadFollowsTheBusiestTenantAndRestores(t *testing.T) {
	f := mustNew(t, Config{Interval: 10 * time.Minute})
	a, b := Key{Model: "m", Tenant: "a"}, Key{Model: "m", Tenant: "b"}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Minute) }
	run := func(from, to int, ra, rb float64) {
		for i := from; i < to; i++ {
			f.Observe(at(i), a, ra*600, 0)
			f.Observe(at(i), b, rb*600, 0)
			f.Advance(at(i + 1))
		}
	}
	run(0, 144, 100, 10)
	if s := f.splits["m"]; s == nil || s.lead != "a" {
		t.Fatalf("split %+v, want lead a", s)
	}
	run(144, 288, 100, 150) // b busier, not twice a
	if s := f.splits["m"]; s.lead != "a" {
		t.Fatalf("lead %q after b became 1.5x a, want a kept", s.lead)
	}
	run(288, 3*288, 100, 400)
	s := f.splits["m"]
	if s.lead != "b" || !(s.rest.requests.last > 90 && s.rest.requests.last < 110) {
		t.Fatalf("lead %q, rest %.1f, want b and about 100 (a's rate)", s.lead, s.rest.requests.last)
	}
	fc, ok := f.Forecast(m, time.Hour)
	if !ok || math.Abs(fc.Requests.Mean-500) > 25 || fc.Requests.P90 < fc.Requests.Mean {
		t.Fatalf("forecast %+v, want about 500 with a p90 above", fc)
	}

	g := mustNew(t, Config{Interval: 10 * time.Minute})
	if err := g.Restore(f.Snapshot()); err != nil {
		t.Fatal(err)
	}
	f = g
	if len(f.splits) != 0 {
		t.Fatalf("splits %v after restore, want none (not in the snapshot)", f.splits)
	}
	run(3*288, 3*288+12, 100, 400)
	if s := f.splits["m"]; s == nil || s.lead != "b" || !s.rest.requests.started {
		t.Fatalf("split %+v after restore, want lead b with its rest series running", s)
	}
	if fc, ok := f.Forecast(m, time.Hour); !ok || math.Abs(fc.Requests.Mean-500) > 25 {
		t.Fatalf("forecast %+v after restore, want about 500", fc)
	}
}
