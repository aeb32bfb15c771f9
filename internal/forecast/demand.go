package forecast

import (
	"time"
)

// Demand adapts a Forecaster to the scaling signal's demand forecast
// (scaling.DemandForecast, matched by method set so neither package
// imports the other): a model's p90 arrival rate in requests per second
// for the interval that holds the instant asked about. The p90, not the
// mean, because a pool sized for the mean is short half the time; the
// interval holding the instant, because a forecast is per interval and
// the rate within one is taken as flat.
type Demand struct {
	Forecaster *Forecaster
	// Scale multiplies every rate (1 when 0): a replica's share of the
	// demand when the forecaster sees it all, or a benchmark's sampling.
	Scale float64
}

// ArrivalRate is model's p90 arrival rate at `at`; ok is false when the
// model has no forecast yet, when at is in an interval already closed, or
// beyond the forecaster's MaxHorizon.
func (d Demand) ArrivalRate(model string, at time.Time) (perSecond float64, ok bool) {
	h, ok := d.Forecaster.horizonOf(at)
	if !ok {
		return 0, false
	}
	fc, ok := d.Forecaster.Forecast(Key{Model: model}, h)
	if !ok {
		return 0, false
	}
	scale := d.Scale
	if scale == 0 {
		scale = 1
	}
	return fc.Requests.P90 * scale, true
}

// horizonOf is the horizon Forecast needs for the interval holding at:
// steps k+1 for the k-th interval after the open one.
func (f *Forecaster) horizonOf(at time.Time) (time.Duration, bool) {
	f.mu.Lock()
	start := f.start
	f.mu.Unlock()
	if start.IsZero() || at.Before(start) {
		return 0, false
	}
	k := at.Sub(start) / f.cfg.Interval
	h := (k + 1) * f.cfg.Interval
	if h > f.cfg.MaxHorizon+f.cfg.Interval-1 {
		return 0, false
	}
	return h, true
}

// ForecastAt is key's forecast for the interval that holds at, the
// horizon Demand uses; ok is false as for ArrivalRate. A caller that
// compares forecasts with what arrived later (the /status history) keys
// them by that interval: at.Truncate(Config().Interval).
func (f *Forecaster) ForecastAt(key Key, at time.Time) (Forecast, bool) {
	h, ok := f.horizonOf(at)
	if !ok {
		return Forecast{}, false
	}
	return f.Forecast(key, h)
}
