package gateway

import (
	"time"
)

// ForecastView is the traffic forecast as /status shows it: internal/app's
// forecastRun, which feeds the forecaster and remembers what it forecast
// for each interval to set it against what then arrived. nil
// (Options.ForecastView): forecasting is off and /status says null.
type ForecastView interface {
	// ForecastInterval is the forecaster's interval: the width of an
	// actual rate and of a history point.
	ForecastInterval() time.Duration
	// ModelForecast is model's actual rate, forecasts and history at now;
	// lead is scaling.lead, whose forecast is the one desired backends
	// uses. The gateway fills in the backends.
	ModelForecast(model string, now time.Time, lead time.Duration) ModelForecast
}

// ForecastStatus is /status's forecast (docs/STATUS.md).
type ForecastStatus struct {
	IntervalS float64         `json:"interval_s"`
	LeadS     float64         `json:"lead_s"`
	Models    []ModelForecast `json:"models"`
}

// ModelForecast is one model's forecast against its actual arrivals.
type ModelForecast struct {
	Model string `json:"model"`
	// Actual is the last closed interval's arrivals; nil before one closed.
	Actual *ForecastPoint `json:"actual"`
	// Horizons are the forecasts now, nearest first; empty while the
	// model has no forecast yet.
	Horizons []ForecastHorizon `json:"horizons"`
	// History is the last closed intervals, oldest first, each with what
	// had been forecast for it scaling.lead before it started.
	History []ForecastPoint `json:"history"`
	// DesiredBackends, Backends and UsableBackends are the scaling
	// signal's (/scaling), which the forecast at scaling.lead feeds.
	DesiredBackends float64 `json:"desired_backends"`
	Backends        int     `json:"backends"`
	UsableBackends  int     `json:"usable_backends"`
}

// ForecastRates is a forecast arrival rate per second: its mean and 90th
// percentile.
type ForecastRates struct {
	Mean float64 `json:"mean"`
	P90  float64 `json:"p90"`
}

// ForecastHorizon is the forecast for one horizon.
type ForecastHorizon struct {
	HorizonS float64 `json:"horizon_s"`
	// Lead marks the entry for scaling.lead: the interval holding
	// now + lead, the one desired backends reads.
	Lead     bool          `json:"lead,omitempty"`
	Requests ForecastRates `json:"requests"`
	Tokens   ForecastRates `json:"tokens"`
}

// ForecastPoint is one closed interval: what arrived, and what had been
// forecast for it.
type ForecastPoint struct {
	At                time.Time `json:"at"` // the interval's start
	RequestsPerSecond float64   `json:"requests_per_second"`
	TokensPerSecond   float64   `json:"tokens_per_second"`
	// Forecast is what was forecast for this interval; nil when nothing
	// was (the forecaster had no data yet, or the gateway was not running).
	Forecast *ForecastMade `json:"forecast"`
}

// ForecastMade is a forecast recorded for a later interval.
type ForecastMade struct {
	// LeadS is how long before the interval started it was made.
	LeadS    float64       `json:"lead_s"`
	Requests ForecastRates `json:"requests"`
	Tokens   ForecastRates `json:"tokens"`
}

// forecastStatus builds /status's forecast; nil when forecasting is off.
func (g *Gateway) forecastStatus(rt *Runtime, now time.Time) *ForecastStatus {
	if g.forecastView == nil {
		return nil
	}
	lead := g.scalingPolicy(rt).Lead
	out := &ForecastStatus{IntervalS: g.forecastView.ForecastInterval().Seconds(), LeadS: lead.Seconds(),
		Models: make([]ModelForecast, 0, len(rt.Models))}
	for _, name := range rt.Models {
		mf := g.forecastView.ModelForecast(name, now, lead)
		mf.Model = name
		if mf.Horizons == nil {
			mf.Horizons = []ForecastHorizon{}
		}
		if mf.History == nil {
			mf.History = []ForecastPoint{}
		}
		s := g.signal(rt, rt.Pools[name])
		mf.DesiredBackends, mf.Backends, mf.UsableBackends = s.DesiredBackends, s.Backends, s.UsableBackends
		out.Models = append(out.Models, mf)
	}
	return out
}
