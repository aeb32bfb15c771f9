package forecast

import (
	"testing"
	"time"
)

// ForecastAt answers for the interval holding the instant, as Demand does:
// the same forecast as Forecast at the matching horizon, nothing for an
// interval already closed or beyond MaxHorizon.
func TestForecastAtIsTheIntervalHoldingTheInstant(t *testing.T) {
	f, err := New(Config{Interval: time.Minute, MaxHorizon: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m := Key{Model: "m"}
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Minute)
		f.Observe(at, m, float64(60+i), 600)
		f.Advance(at.Add(time.Minute))
	}
	open := t0.Add(30 * time.Minute) // the open interval's start
	for k := range 10 {
		got, ok := f.ForecastAt(m, open.Add(time.Duration(k)*time.Minute+30*time.Second))
		want, _ := f.Forecast(m, time.Duration(k+1)*time.Minute)
		if !ok || got != want {
			t.Fatalf("ForecastAt(open + %dm30s) = %+v (%v), want Forecast at %dm: %+v", k, got, ok, k+1, want)
		}
	}
	if _, ok := f.ForecastAt(m, open.Add(-time.Second)); ok {
		t.Error("a forecast for an interval already closed")
	}
	if _, ok := f.ForecastAt(m, open.Add(10*time.Minute)); ok {
		t.Error("a forecast beyond max_horizon")
	}
	if _, ok := f.ForecastAt(Key{Model: "other"}, open); ok {
		t.Error("a forecast for a series never seen")
	}
}
