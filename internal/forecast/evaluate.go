package forecast

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Score is one horizon's result of Evaluate. Errors are MASE: mean
// absolute error divided by the mean absolute error of the one-interval
// naive forecast over the training days.
type Score struct {
	Horizon       time.Duration
	Sluice        float64 // this package's mean forecast
	Naive         float64 // the last value
	SeasonalNaive float64 // the same interval one day earlier
	CoverageP90   float64 // share of scored intervals at or under the p90
	Scored        int     // intervals scored
}

// Evaluation is the result of Evaluate.
type Evaluation struct {
	Scores []Score
	Gaps   int // intervals detected as data gaps (see DetectGaps)
	Scale  float64
}

// GapShare is the share of the neighbouring days' median under which
// DetectGaps calls an interval a data gap.
const GapShare = 0.05

// DetectGaps marks intervals that are data gaps: a value below GapShare
// (5%) of the median of the same interval on the two days before and the
// two days after (those that exist). It looks both ways, so it is only for
// scoring: the models find gaps online by themselves (Config.GapFraction).
func DetectGaps(ys []float64, perDay int) []bool {
	gaps := make([]bool, len(ys))
	nb := make([]float64, 0, 4)
	for i, y := range ys {
		nb = nb[:0]
		for _, d := range []int{-2, -1, 1, 2} {
			if j := i + d*perDay; j >= 0 && j < len(ys) {
				nb = append(nb, ys[j])
			}
		}
		if len(nb) == 0 {
			continue
		}
		slices.Sort(nb)
		med := nb[len(nb)/2]
		if len(nb)%2 == 0 {
			med = (nb[len(nb)/2-1] + nb[len(nb)/2]) / 2
		}
		gaps[i] = y < GapShare*med
	}
	return gaps
}

// Evaluate walks a rate series forward (ys[i] is the rate of the interval
// starting at start + i*cfg.Interval), feeding a Forecaster one interval at
// a time and asking it, after each, for every horizon; nothing later than
// the interval just fed is visible to it. Intervals from trainDays on are
// scored. An interval is scored at horizon h when neither it, nor the
// interval the forecast was made from, nor the same interval a day earlier
// is a data gap, so every method is scored on the same intervals and none
// is handed a gap as its input.
func Evaluate(ys []float64, start time.Time, cfg Config, trainDays int, horizons []time.Duration) (*Evaluation, error) {
	return EvaluateTenants([][]float64{ys}, nil, start, cfg, trainDays, horizons)
}

// EvaluateTenants is Evaluate for a model's total made of tenants' series
// (parts[j] is tenant names[j]'s, all of one length), fed per tenant as a
// gateway counts them, so the forecaster can forecast its busiest tenant
// apart (split.go). The total is what is scored. With names nil the parts
// are summed and fed as the total alone.
func EvaluateTenants(parts [][]float64, names []string, start time.Time, cfg Config, trainDays int, horizons []time.Duration) (*Evaluation, error) {
	if len(parts) == 0 || (names != nil && len(names) != len(parts)) {
		return nil, errors.New("forecast: want one name per tenant series")
	}
	ys := make([]float64, len(parts[0]))
	for _, p := range parts {
		if len(p) != len(ys) {
			return nil, errors.New("forecast: tenant series of different lengths")
		}
		for i, v := range p {
			ys[i] += v
		}
	}
	if len(horizons) == 0 {
		return nil, errors.New("forecast: no horizon to score")
	}
	cfg = cfg.WithDefaults()
	cfg.MaxHorizon = max(cfg.MaxHorizon, slices.Max(horizons))
	fc, err := New(cfg)
	if err != nil {
		return nil, err
	}
	perDay := int(24 * time.Hour / cfg.Interval)
	first := trainDays * perDay
	if trainDays < 1 || first >= len(ys) {
		return nil, fmt.Errorf("forecast: %d intervals are not more than %d training days", len(ys), trainDays)
	}
	gaps := DetectGaps(ys, perDay)
	scale := naiveScale(ys[:first], gaps[:first])
	if !(scale > 0) {
		return nil, errors.New("forecast: the training days are constant: no error scale")
	}
	steps := make([]int, len(horizons))
	mean := make([][]float64, len(horizons))
	p90 := make([][]float64, len(horizons))
	for i, h := range horizons {
		steps[i] = cfg.steps(h)
		mean[i] = make([]float64, len(ys))
		p90[i] = make([]float64, len(ys))
	}
	key := Key{Model: "series"}
	for o, y := range ys {
		at := start.Add(time.Duration(o) * cfg.Interval)
		if names == nil {
			fc.Observe(at, key, y*cfg.Interval.Seconds(), 0)
		}
		for j, name := range names {
			fc.Observe(at, Key{Model: key.Model, Tenant: name}, parts[j][o]*cfg.Interval.Seconds(), 0)
		}
		fc.Advance(at.Add(cfg.Interval))
		for i, h := range horizons {
			if f, ok := fc.Forecast(key, h); ok {
				mean[i][o], p90[i][o] = f.Requests.Mean, f.Requests.P90
			}
		}
	}
	ev := &Evaluation{Scale: scale}
	for _, g := range gaps {
		if g {
			ev.Gaps++
		}
	}
	for i, h := range horizons {
		s := Score{Horizon: h}
		var errS, errN, errSN float64
		var covered int
		for t := max(first, steps[i], perDay); t < len(ys); t++ {
			o := t - steps[i]
			if gaps[t] || gaps[o] || gaps[t-perDay] {
				continue
			}
			errS += math.Abs(mean[i][o] - ys[t])
			errN += math.Abs(ys[o] - ys[t])
			errSN += math.Abs(ys[t-perDay] - ys[t])
			if ys[t] <= p90[i][o] {
				covered++
			}
			s.Scored++
		}
		if s.Scored == 0 {
			return nil, fmt.Errorf("forecast: nothing to score at horizon %v", h)
		}
		n := float64(s.Scored)
		s.Sluice, s.Naive, s.SeasonalNaive = errS/n/scale, errN/n/scale, errSN/n/scale
		s.CoverageP90 = float64(covered) / n
		ev.Scores = append(ev.Scores, s)
	}
	return ev, nil
}

// naiveScale is the mean absolute one-interval change, gaps left out.
func naiveScale(ys []float64, gaps []bool) float64 {
	var sum float64
	var n int
	for i := 1; i < len(ys); i++ {
		if !gaps[i] && !gaps[i-1] {
			sum += math.Abs(ys[i] - ys[i-1])
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
