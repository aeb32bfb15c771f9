// Package scaling turns what the gateway sees of each model — arrivals,
// refusals, completions per backend, its queue — into the figures a scaler
// acts on, above all desired backends: how many backends the model needs
// now to meet its time-to-first-token objective (see Plan for the formula,
// docs/DEPLOY.md "Scaling signals" for how to use it).
//
// The split: a Meter records events as they happen (O(1) each, on the
// request path); Plan is a pure function of a Meter's reading and the
// pool's state at one instant, called at scrape time; the Collector
// exports the plans as Prometheus gauges. Time is always a parameter.
package scaling

import (
	"math"
	"time"
)

// Rate is an exponentially decayed event rate: every event of weight w at
// time t adds w/τ·e^(−(now−t)/τ) to the rate read at now. For a steady
// stream of events it reads the stream's rate; after a change it moves
// 63% of the way to the new rate in τ (the window), with no buckets to
// keep and O(1) work per event. Events and readings may come in any time
// order within a few milliseconds (concurrent requests); an event dated
// before the last one is counted as if it came then. The zero value is
// ready to use and reads 0.
type Rate struct {
	v  float64   // the rate at `at`, per second
	at time.Time // zero before the first event
}

// Add counts an event of weight w at now, over window tau.
func (r *Rate) Add(now time.Time, w float64, tau time.Duration) {
	r.v = r.At(now, tau) + w/tau.Seconds()
	if now.After(r.at) {
		r.at = now
	}
}

// At reads the rate at now over window tau.
func (r *Rate) At(now time.Time, tau time.Duration) float64 {
	if r.at.IsZero() {
		return 0
	}
	return r.v * decay(now.Sub(r.at), tau)
}

// decay is e^(−d/τ), 1 for a d at or before 0.
func decay(d, tau time.Duration) float64 {
	if d <= 0 {
		return 1
	}
	return math.Exp(-d.Seconds() / tau.Seconds())
}

// Mean is an exponentially decayed mean over time: samples weigh
// e^(−age/τ), so it follows the last window's values and keeps its value
// while no samples come. The zero value reads 0 and ok false.
type Mean struct {
	sum, n float64
	at     time.Time
}

// Add records a sample v at now.
func (m *Mean) Add(now time.Time, v float64, tau time.Duration) {
	k := decay(now.Sub(m.at), tau)
	if m.at.IsZero() {
		k = 0
	}
	m.sum, m.n = m.sum*k+v, m.n*k+1
	if now.After(m.at) {
		m.at = now
	}
}

// Value is the mean; ok is false before the first sample.
func (m *Mean) Value() (v float64, ok bool) {
	if m.n == 0 {
		return 0, false
	}
	return m.sum / m.n, true
}
