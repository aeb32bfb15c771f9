// Package forecast predicts a model's arrival rate (requests/s and
// tokens/s) minutes ahead, so that capacity can be added before a peak
// rather than after it.
//
// Each series (a model, or a model's tenant with enough traffic) is a small
// online model updated once per interval with O(1) work and fixed memory:
//
//   - six forecasts: the last value (naive), the same 10-minute slot the
//     day before (seasonal naive), a smoothed level (exponential smoothing),
//     a level with a damped trend and daily and weekly seasonal profiles
//     (multiple-seasonal Holt-Winters, profiles at 10-minute resolution),
//     the last value plus yesterday's change from now's slot to the
//     target's (a seasonal difference: the daily shape on today's level),
//     and the last value plus a least-absolute-deviations fit of the change
//     on the series' own recent changes, refitted online per horizon (a
//     fresh move partly pulled back toward the 6 h and 24 h means; lad.go);
//   - for a fixed set of horizons, the recent error of each of the six,
//     measured when the forecast made that many intervals ago comes due,
//     over the last hour and over the last four horizons; each memory
//     weights them by the inverse eighth power of that error (nearly the
//     best one, near-ties blended), so a series with a daily cycle leans on
//     the profiles and one without on the level; the mean forecast weights
//     the two combinations the same way by their own error over 36
//     horizons (combine.go);
//   - per horizon, the 90th percentile of the error of that mean relative
//     to max(mean, a quarter of the slow level), tracked by a
//     stochastic-approximation quantile; the p90 forecast is the mean plus
//     that many times the same scale.
//
// The evaluation behind these choices (ServeGen m-mid, days 8-14 walked
// forward) is in docs/BENCHMARKS.md; `sluice bench forecast` reproduces it.
//
// Time is always a parameter: nothing here reads the clock.
package forecast

import (
	"errors"
	"fmt"
	"time"
)

// SlotWidth is the resolution of the seasonal profiles: one value per 10
// minutes of the day (144) and of the week (1008), whatever the interval.
const SlotWidth = 10 * time.Minute

const (
	slotsPerDay  = int(24 * time.Hour / SlotWidth)
	slotsPerWeek = 7 * slotsPerDay
)

// Config holds the forecaster's settings. Smoothing is given as half-lives,
// so a setting means the same at any interval. The zero value of a field
// takes the default named in its comment (see WithDefaults).
type Config struct {
	// Interval is how often rates are closed and the models updated: whole
	// seconds dividing SlotWidth (10m). Default 1m.
	Interval time.Duration
	// LevelHalfLife is how fast the level follows the data. Default 10m.
	LevelHalfLife time.Duration
	// TrendHalfLife is how fast the slope estimate moves. Default 6h.
	TrendHalfLife time.Duration
	// TrendFade is the half-life of a slope's effect when projected
	// forward (a damped trend). Default 1h.
	TrendFade time.Duration
	// DailyHalfLife and WeeklyHalfLife are how many days (weeks) it takes
	// for a seasonal profile to forget half of what it learned. Default 14.
	DailyHalfLife, WeeklyHalfLife float64
	// ErrorHalfLife is the memory of the per-horizon errors that weight the
	// forecasts in the fast combination; the slow one remembers four
	// horizons, but no less than this (combine.go). Default 1h.
	ErrorHalfLife time.Duration
	// QuantileStep is the step of the p90 tracker, as a share of the
	// recent mean absolute relative error. Default 0.05.
	QuantileStep float64
	// GapFraction: an interval whose rate is below this share of the level
	// is taken for a data gap (an outage, a lost scrape) and skipped, for at
	// most MaxGap; after that the low rate is believed. Default 0.05 and 4h
	// (0 takes the default, as for every field: there is no "believe at
	// once" value; Live turns the rule off). Off Live, silent intervals
	// are also counted as zeros for up to MaxGap (at least 10 intervals)
	// before they are taken for a stopped clock and skipped.
	GapFraction float64
	MaxGap      time.Duration
	// Live says the series are counted from every arrival as it happens
	// (a running gateway sees every request): a low rate is then demand,
	// never missing data, so GapFraction does not apply and a stop is
	// followed at once. Only intervals the process did not observe (down,
	// paused, a clock step) are skipped as unknown. Off for a recorded
	// trace, whose missing windows are data gaps (Evaluate).
	Live bool
	// MaxHorizon is the longest horizon asked for. Default 60m.
	MaxHorizon time.Duration
	// MaxSeries bounds the number of series (models plus tenants), so that
	// request-supplied names cannot grow memory; room.go says who gets a
	// place when it is full. Default 256.
	MaxSeries int
	// MinTenantRate (requests/s) is the rate at which a tenant gets a
	// series of its own; below it only the model's total is forecast.
	// Default 1; negative disables per-tenant series.
	MinTenantRate float64
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	deff := func(f *float64, v float64) {
		if *f == 0 {
			*f = v
		}
	}
	def(&c.Interval, time.Minute)
	def(&c.LevelHalfLife, 10*time.Minute)
	def(&c.TrendHalfLife, 6*time.Hour)
	def(&c.TrendFade, time.Hour)
	deff(&c.DailyHalfLife, 14)
	deff(&c.WeeklyHalfLife, 14)
	def(&c.ErrorHalfLife, time.Hour)
	deff(&c.QuantileStep, 0.05)
	deff(&c.GapFraction, 0.05)
	def(&c.MaxGap, 4*time.Hour)
	def(&c.MaxHorizon, time.Hour)
	if c.MaxSeries == 0 {
		c.MaxSeries = 256
	}
	deff(&c.MinTenantRate, 1)
	return c
}

// Validate reports the first setting out of range, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Interval < time.Second || c.Interval > SlotWidth || SlotWidth%c.Interval != 0 || c.Interval%time.Second != 0:
		return fmt.Errorf("interval %v: must be whole seconds between 1s and %v that divide %v evenly", c.Interval, SlotWidth, SlotWidth)
	case c.LevelHalfLife <= 0 || c.TrendHalfLife <= 0 || c.TrendFade <= 0 || c.ErrorHalfLife <= 0:
		return errors.New("level_half_life, trend_half_life, trend_fade and error_half_life must be positive durations")
	case !(c.DailyHalfLife > 0 && c.DailyHalfLife <= 1000) || !(c.WeeklyHalfLife > 0 && c.WeeklyHalfLife <= 1000):
		return errors.New("daily_half_life and weekly_half_life must be between 0 and 1000 (days, weeks)")
	case !(c.QuantileStep > 0 && c.QuantileStep <= 1):
		return fmt.Errorf("quantile_step %v: must be in (0, 1]", c.QuantileStep)
	case !(c.GapFraction > 0 && c.GapFraction < 1):
		return fmt.Errorf("gap_fraction %v: must be in (0, 1)", c.GapFraction)
	case c.MaxGap < 0:
		return errors.New("max_gap must not be negative")
	case c.MaxHorizon < c.Interval || c.MaxHorizon > 24*time.Hour:
		return fmt.Errorf("max_horizon %v: must be between the interval and 24h", c.MaxHorizon)
	case c.steps(c.MaxHorizon) > maxHorizonSteps:
		return fmt.Errorf("max_horizon %v: at most %d intervals of %v", c.MaxHorizon, maxHorizonSteps, c.Interval)
	case c.MaxSeries < 1 || c.MaxSeries > maxSeriesLimit:
		return fmt.Errorf("max_series %d: must be between 1 and %d", c.MaxSeries, maxSeriesLimit)
	}
	return nil
}

// maxHorizonSteps bounds the pending-forecast rings (their memory).
const maxHorizonSteps = 1440

// maxSeriesLimit caps MaxSeries and the series count a snapshot may claim.
const maxSeriesLimit = 100_000

// steps is how many intervals cover d (at least one).
func (c Config) steps(d time.Duration) int {
	n := int((d + c.Interval - 1) / c.Interval)
	return max(n, 1)
}

// trackedHorizons are the horizons whose errors and p90 are tracked; a
// forecast for another horizon uses the nearest tracked one at or above it.
func (c Config) trackedHorizons() []int {
	var out []int
	for _, d := range []time.Duration{c.Interval, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
		20 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour,
		8 * time.Hour, 24 * time.Hour} {
		if d > c.MaxHorizon {
			d = c.MaxHorizon
		}
		if s := c.steps(d); len(out) == 0 || s > out[len(out)-1] {
			out = append(out, s)
		}
	}
	return out
}
