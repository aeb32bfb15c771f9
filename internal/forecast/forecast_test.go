package forecast

import (
	"math"
	"testing"
	"time"
)

// t0 is a Monday 00:00 UTC, so days start at slot boundaries.
var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

var m = Key{Model: "m"}

// feed runs f over rate(i) for intervals from..to-1 (interval i starts at
// t0 + i*Interval), calling each after every interval with the index of
// the interval just closed.
func feed(f *Forecaster, from, to int, rate func(i int) float64, each func(i int)) {
	iv := f.Config().Interval
	for i := from; i < to; i++ {
		at := t0.Add(time.Duration(i) * iv)
		f.Observe(at, m, rate(i)*iv.Seconds(), 10*rate(i)*iv.Seconds())
		f.Advance(at.Add(iv))
		if each != nil {
			each(i)
		}
	}
}

func mustNew(t *testing.T, cfg Config) *Forecaster {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A pure daily sine must be learned: after three weeks the hour-ahead
// forecast is far better than the last value and the p90 covers about 90%.
func TestLearnsADailySine(t *testing.T) {
	f := mustNew(t, Config{Interval: time.Minute})
	const perDay = 1440
	sine := func(i int) float64 { return 100 + 60*math.Sin(2*math.Pi*float64(i)/perDay) }
	const h = 60
	var errF, errNaive float64
	var covered, n int
	pending := map[int]Estimate{} // target interval -> forecast
	feed(f, 0, 22*perDay, sine, func(i int) {
		if i >= 21*perDay {
			if e, ok := pending[i]; ok {
				errF += math.Abs(e.Mean - sine(i))
				errNaive += math.Abs(sine(i-h) - sine(i))
				if sine(i) <= e.P90 {
					covered++
				}
				n++
				delete(pending, i)
			}
		}
		if i >= 21*perDay-h {
			fc, ok := f.Forecast(m, h*time.Minute)
			if !ok {
				t.Fatal("no forecast")
			}
			pending[i+h] = fc.Requests
			if fc.Tokens.Mean < 9*fc.Requests.Mean || fc.Tokens.Mean > 11*fc.Requests.Mean {
				t.Fatalf("tokens forecast %v, want about 10x requests %v", fc.Tokens.Mean, fc.Requests.Mean)
			}
		}
	})
	t.Logf("day 22, 60 min ahead: mean abs error %.2f, naive %.2f, p90 coverage %.2f", errF/float64(n), errNaive/float64(n), float64(covered)/float64(n))
	if errF > 0.25*errNaive {
		t.Errorf("mean abs error %.2f, want under a quarter of the naive %.2f", errF/float64(n), errNaive/float64(n))
	}
	if c := float64(covered) / float64(n); c < 0.75 || c > 1 {
		t.Errorf("p90 coverage %.2f, want about 0.9", c)
	}
}

// A step change must be followed, up and down, within the hour.
func TestFollowsAStepChange(t *testing.T) {
	for _, after := range []float64{300, 30} {
		f := mustNew(t, Config{Interval: time.Minute})
		step := 2 * 1440
		rate := func(i int) float64 {
			if i < step {
				return 100
			}
			return after
		}
		feed(f, 0, step+60, rate, nil)
		fc, _ := f.Forecast(m, 10*time.Minute)
		if math.Abs(fc.Requests.Mean-after) > 0.05*after {
			t.Errorf("an hour after a step 100 -> %v the 10-minute forecast is %.1f", after, fc.Requests.Mean)
		}
		if fc.Requests.P90 < fc.Requests.Mean {
			t.Errorf("p90 %v below the mean %v", fc.Requests.P90, fc.Requests.Mean)
		}
	}
}

// A short drop to zero is a data gap and leaves the level alone; a drop
// that lasts longer than MaxGap is believed.
func TestGapsAreSkippedThenBelieved(t *testing.T) {
	f := mustNew(t, Config{Interval: time.Minute, MaxGap: 2 * time.Hour})
	outage := 1440
	rate := func(i int) float64 {
		if i >= outage {
			return 0
		}
		return 100
	}
	feed(f, 0, outage+60, rate, nil)
	if fc, _ := f.Forecast(m, 10*time.Minute); math.Abs(fc.Requests.Mean-100) > 5 {
		t.Errorf("an hour into an outage the forecast is %.1f, want about 100 (a gap is skipped)", fc.Requests.Mean)
	}
	feed(f, outage+60, outage+240, rate, nil)
	if fc, _ := f.Forecast(m, 10*time.Minute); fc.Requests.Mean > 5 {
		t.Errorf("four hours into a drop to zero the forecast is %.1f, want about 0", fc.Requests.Mean)
	}
}

// Tenants get a series of their own only above MinTenantRate, and names
// beyond MaxSeries are not tracked; a model takes a tenant's place
// (room.go).
func TestSeriesAreBounded(t *testing.T) {
	f := mustNew(t, Config{Interval: time.Minute, MinTenantRate: 1, MaxSeries: 4})
	f.Observe(t0, Key{Model: "m", Tenant: "big"}, 120, 1000) // 2 req/s
	f.Observe(t0, Key{Model: "m", Tenant: "small"}, 6, 50)   // 0.1 req/s
	f.Advance(t0.Add(time.Minute))
	if _, ok := f.Forecast(Key{Model: "m", Tenant: "big"}, time.Minute); !ok {
		t.Error("the busy tenant has no forecast")
	}
	for j := range 10 {
		f.Observe(t0.Add(time.Minute), Key{Model: string(rune('a' + j))}, 1, 1)
	}
	f.Advance(t0.Add(2 * time.Minute))
	if len(f.Keys()) != 4 {
		t.Errorf("%d series, want max_series 4: %v", len(f.Keys()), f.Keys())
	}
	// Models come first: the tenant (quiet now) gave its place to one,
	// and the other new models found none.
	if _, ok := f.Forecast(Key{Model: "m", Tenant: "big"}, time.Minute); ok {
		t.Error("the tenant kept its series while models found no room")
	}
	if st := f.SeriesStats(); st.Models != 4 || st.Tenants != 0 || st.Evicted != 1 || st.Refused != 7 {
		t.Errorf("series stats %+v, want 4 models, 1 evicted, 7 refused", st)
	}
	if _, ok := f.Forecast(Key{Model: "m", Tenant: "small"}, time.Minute); ok {
		t.Error("a tenant under min_tenant_rate has a series")
	}
	if fc, ok := f.Forecast(Key{Model: "m"}, time.Minute); !ok || fc.Requests.Mean <= 0 || fc.Requests.Mean > 2.1 {
		t.Errorf("model forecast %+v %v, want between 0 and 2.1 req/s (both tenants, then nothing)", fc, ok)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{Interval: 7 * time.Second},
		{Interval: 1500 * time.Millisecond},
		{Interval: 20 * time.Minute},
		{GapFraction: 1},
		{QuantileStep: 2},
		{MaxHorizon: 48 * time.Hour},
		{Interval: time.Second, MaxHorizon: time.Hour},
		{MaxSeries: -1},
		{DailyHalfLife: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestDetectGaps(t *testing.T) {
	ys := make([]float64, 5*4)
	for i := range ys {
		ys[i] = 100
	}
	ys[9], ys[10] = 0, 3 // day 2, two windows
	ys[14] = 60          // low but not a gap
	gaps := DetectGaps(ys, 4)
	for i, g := range gaps {
		if want := i == 9 || i == 10; g != want {
			t.Errorf("window %d: gap %v, want %v", i, g, want)
		}
	}
}

// On a noisy daily cycle the walk-forward evaluation scores the forecaster
// above both baselines at an hour.
func TestEvaluateOnANoisyDailyCycle(t *testing.T) {
	const perDay = 144
	ys := make([]float64, 14*perDay)
	noise := uint64(1)
	for i := range ys {
		noise = noise*6364136223846793005 + 1442695040888963407
		ys[i] = 1000 + 400*math.Sin(2*math.Pi*float64(i)/perDay) + float64(noise>>40%200) - 100
	}
	ys[1500], ys[1501] = 0, 0
	ev, err := Evaluate(ys, t0, Config{Interval: 10 * time.Minute}, 7, []time.Duration{10 * time.Minute, time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Gaps != 2 {
		t.Errorf("%d gaps, want 2", ev.Gaps)
	}
	for _, s := range ev.Scores {
		t.Logf("%+v", s)
		if s.Sluice >= min(s.Naive, s.SeasonalNaive) {
			t.Errorf("horizon %v: %.3f, not better than the baselines %.3f, %.3f", s.Horizon, s.Sluice, s.Naive, s.SeasonalNaive)
		}
		if s.CoverageP90 < 0.8 || s.CoverageP90 > 0.97 {
			t.Errorf("horizon %v: p90 coverage %.2f", s.Horizon, s.CoverageP90)
		}
	}
}

// BenchmarkCloseInterval is the cost of one interval of one series
// (requests and tokens), with the default horizons up to an hour.
func BenchmarkCloseInterval(b *testing.B) {
	f, _ := New(Config{Interval: time.Minute})
	i := 0
	for b.Loop() {
		at := t0.Add(time.Duration(i) * time.Minute)
		f.Observe(at, m, 600, 6000)
		i++
	}
}

// BenchmarkObserve is the cost of counting one arrival.
func BenchmarkObserve(b *testing.B) {
	f, _ := New(Config{Interval: time.Minute})
	k := Key{Model: "m", Tenant: "t"}
	for b.Loop() {
		f.Observe(t0, k, 1, 500)
	}
}

// An Advance that comes late (several intervals at once) still closes the
// open interval with its arrivals; a very long silence is skipped.
func TestLateAdvanceKeepsTheOpenInterval(t *testing.T) {
	f := mustNew(t, Config{Interval: time.Minute})
	f.Observe(t0, m, 120, 1200)
	f.Advance(t0.Add(3 * time.Minute))
	if fc, ok := f.Forecast(m, time.Minute); !ok || fc.Requests.Mean != 2 || fc.Tokens.Mean != 20 {
		t.Errorf("forecast %+v %v, want 2 req/s and 20 tokens/s from the one interval seen", fc, ok)
	}
	f.Advance(t0.Add(48 * time.Hour))
	f.Observe(t0.Add(48*time.Hour), m, 120, 1200)
	f.Advance(t0.Add(48*time.Hour + time.Minute))
	if fc, _ := f.Forecast(m, time.Minute); fc.Requests.Mean != 2 {
		t.Errorf("after two silent days skipped, forecast %+v, want 2 req/s", fc)
	}
}

// A daily shape on a level that moves at midnight from day to day: the
// shape's change over the next hour, as seen yesterday, applied to the
// current value forecasts it; the same time yesterday is off by the
// level's move and the last value by the shape's. Scored on day 22 from
// 02:00 (forecasts made from 01:00, an hour after the move).
func TestAppliesTheDailyShapeToTodaysLevel(t *testing.T) {
	f := mustNew(t, Config{Interval: 10 * time.Minute})
	const perDay, h = 144, 6
	levels := []float64{0, 80, 30, 120, 60, 10, 100}
	rate := func(i int) float64 {
		return 100 + levels[i/perDay%len(levels)] + 60*math.Sin(2*math.Pi*float64(i)/perDay)
	}
	var errF, errNaive, errDay float64
	pending := map[int]float64{}
	feed(f, 0, 22*perDay, rate, func(i int) {
		if e, ok := pending[i]; ok {
			errF += math.Abs(e - rate(i))
			errNaive += math.Abs(rate(i-h) - rate(i))
			errDay += math.Abs(rate(i-perDay) - rate(i))
		}
		if i >= 21*perDay+12-h && i < 22*perDay-h {
			fc, _ := f.Forecast(m, h*10*time.Minute)
			pending[i+h] = fc.Requests.Mean
		}
	})
	t.Logf("day 22, 60 min ahead: total abs error %.0f, naive %.0f, a day earlier %.0f", errF, errNaive, errDay)
	if best := min(errNaive, errDay); errF > 0.25*best {
		t.Errorf("total abs error %.0f, want under a quarter of the better baseline's %.0f", errF, best)
	}
}

// IntervalEnd answers for the start it is given: the end moves with it.
func TestIntervalEndFollowsStart(t *testing.T) {
	var e IntervalEnd
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	if !e.Before(start.Add(59*time.Second), start, time.Minute) || e.Before(start.Add(time.Minute), start, time.Minute) {
		t.Fatal("the end of [start, start+1m) is not start+1m")
	}
	next := start.Add(time.Minute)
	if !e.Before(next.Add(30*time.Second), next, time.Minute) {
		t.Fatal("the end did not move with the start: an arrival inside the new interval was put past its end")
	}
	if e.Before(next.Add(time.Minute), next, time.Minute) {
		t.Fatal("the new interval's end is not next+1m")
	}
}
