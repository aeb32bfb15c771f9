package app

import (
	"slices"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/gateway"
)

// historyPoints bounds each model's forecast-against-actual history on
// /status: an hour at the default interval.
const historyPoints = 60

// arrivalHistory is what /status sets the forecast against: each model's
// arrivals counted per forecast interval (the same intervals as the
// forecaster's, so the rates are the ones it learns from), and, when an
// interval closes, its rates kept beside what had been forecast for it.
// At each close it asks the forecaster for the interval holding
// now + scaling.lead, the forecast desired backends uses, and keeps it
// until that interval closes. Memory is fixed: at most maxModels models,
// historyPoints points and one pending forecast per interval of lead each.
type arrivalHistory struct {
	fc        *forecast.Forecaster
	iv        time.Duration
	maxModels int
	// lead is scaling.lead in force (it may change on reload); nil: 0.
	lead func() time.Duration

	mu     sync.Mutex
	start  time.Time            // the open interval's start; zero before any time was seen
	end    forecast.IntervalEnd // start + iv
	models map[string]*modelHistory
	// last is the model the last arrival counted for (models are never
	// removed): arrivals in a row are mostly for one model, found by
	// comparing its name instead of a map lookup.
	last      *modelHistory
	lastModel string
}

type modelHistory struct {
	requests, tokens float64 // the open interval's arrivals
	points           []gateway.ForecastPoint
	// pending are forecasts for intervals not closed yet, by the
	// interval's start (Unix seconds: intervals are whole seconds).
	pending map[int64]gateway.ForecastMade
}

func newArrivalHistory(fc *forecast.Forecaster) *arrivalHistory {
	cfg := fc.Config()
	return &arrivalHistory{fc: fc, iv: cfg.Interval, maxModels: cfg.MaxSeries, models: map[string]*modelHistory{}}
}

// observe counts requests arrivals of model at t (more than one: arrivals
// summed in one interval, forecastRun's batch) and returns the end of the
// open interval after the count: observe for a time before it closes
// none (read under this lock, not by a call of its own for each batch
// started). Models beyond maxModels are not kept (the parse stage lets
// only configured models through; this is the bound should that change).
func (h *arrivalHistory) observe(t time.Time, model string, requests, tokens float64) time.Time {
	h.mu.Lock()
	h.advance(t)
	m := h.last
	if m == nil || h.lastModel != model {
		if m = h.models[model]; m == nil {
			if len(h.models) >= h.maxModels {
				end := h.end.End(h.start, h.iv)
				h.mu.Unlock()
				return end
			}
			m = &modelHistory{pending: map[int64]gateway.ForecastMade{}}
			h.models[model] = m
		}
		h.last, h.lastModel = m, model
	}
	m.requests += requests
	m.tokens += tokens
	end := h.end.End(h.start, h.iv)
	h.mu.Unlock() // not deferred: this runs on every request
	return end
}

// Advance closes the intervals that ended at or before t (the forecast
// loop's tick; arrivals close them too).
func (h *arrivalHistory) Advance(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rewind(t)
	h.advance(t)
}

// rewind restarts the open interval at t when the clock was stepped back
// more than 10 minutes (or two intervals), as the forecaster does
// (forecast.Forecaster.Advance): otherwise no interval closes, and the
// history stands still, until the clock catches up. The forecasts waiting
// for their intervals are dropped: their targets moved.
func (h *arrivalHistory) rewind(t time.Time) {
	if h.start.IsZero() || !t.Before(h.start.Add(-max(10*time.Minute, 2*h.iv))) {
		return
	}
	for _, m := range h.models {
		clear(m.pending)
		m.requests, m.tokens = 0, 0
	}
	h.start = time.Time{}
}

func (h *arrivalHistory) advance(t time.Time) {
	if h.start.IsZero() {
		h.start = t.Truncate(h.iv)
		h.record()
		return
	}
	if h.end.Before(t, h.start, h.iv) {
		return
	}
	n := int64(t.Sub(h.start) / h.iv)
	if n <= 0 {
		return
	}
	// Intervals without arrivals are zeros; after a pause longer than the
	// history, only its last historyPoints intervals could be shown.
	if skip := n - historyPoints; skip > 0 {
		h.closeInterval()
		h.start = h.start.Add(time.Duration(skip-1) * h.iv)
		n = historyPoints
	}
	for range n {
		h.closeInterval()
	}
	h.record()
}

// closeInterval turns the open interval's counts into a point, paired with
// the forecast made for it, and opens the next interval.
func (h *arrivalHistory) closeInterval() {
	secs, at := h.iv.Seconds(), h.start.Unix()
	for _, m := range h.models {
		p := gateway.ForecastPoint{At: h.start, RequestsPerSecond: m.requests / secs, TokensPerSecond: m.tokens / secs}
		if f, ok := m.pending[at]; ok {
			p.Forecast = &f
		}
		for k := range m.pending {
			if k <= at {
				delete(m.pending, k)
			}
		}
		if len(m.points) == historyPoints {
			m.points = append(m.points[:0], m.points[1:]...)
		}
		m.points = append(m.points, p)
		m.requests, m.tokens = 0, 0
	}
	h.start = h.start.Add(h.iv)
}

// record asks, at the start of the open interval, for each model's
// forecast of the interval holding now + lead.
func (h *arrivalHistory) record() {
	var lead time.Duration
	if h.lead != nil {
		lead = h.lead()
	}
	for name, m := range h.models {
		f, ok := h.fc.ForecastAt(forecast.Key{Model: name}, h.start.Add(lead))
		if !ok {
			continue
		}
		target := h.start.Add(lead).Truncate(h.iv)
		m.pending[target.Unix()] = gateway.ForecastMade{LeadS: target.Sub(h.start).Seconds(),
			Requests: rates(f.Requests), Tokens: rates(f.Tokens)}
	}
}

func rates(e forecast.Estimate) gateway.ForecastRates {
	return gateway.ForecastRates{Mean: e.Mean, P90: e.P90}
}

// ForecastInterval is gateway.ForecastView's: the forecaster's interval.
func (h *arrivalHistory) ForecastInterval() time.Duration { return h.iv }

// ModelForecast is gateway.ForecastView's: model's history and its
// forecasts at now for the exported horizons and for scaling.lead.
func (h *arrivalHistory) ModelForecast(model string, now time.Time, lead time.Duration) gateway.ModelForecast {
	var out gateway.ModelForecast
	h.mu.Lock()
	if m := h.models[model]; m != nil && len(m.points) > 0 {
		out.History = slices.Clone(m.points)
		last := out.History[len(out.History)-1]
		out.Actual = &last
	}
	h.mu.Unlock()
	key := forecast.Key{Model: model}
	for _, d := range exportedHorizons(h.fc.Config().MaxHorizon) {
		if f, ok := h.fc.Forecast(key, d); ok {
			out.Horizons = append(out.Horizons, gateway.ForecastHorizon{HorizonS: d.Seconds(),
				Requests: rates(f.Requests), Tokens: rates(f.Tokens)})
		}
	}
	if f, ok := h.fc.ForecastAt(key, now.Add(lead)); ok {
		out.Horizons = append(out.Horizons, gateway.ForecastHorizon{HorizonS: lead.Seconds(), Lead: true,
			Requests: rates(f.Requests), Tokens: rates(f.Tokens)})
	}
	slices.SortStableFunc(out.Horizons, func(a, b gateway.ForecastHorizon) int {
		switch {
		case a.HorizonS < b.HorizonS:
			return -1
		case a.HorizonS > b.HorizonS:
			return 1
		}
		return 0
	})
	return out
}
