package forecast

import (
	"testing"
	"time"
)

// feedUntil observes rate(t) requests/s for every interval in [from, to).
func feedUntil(f *Forecaster, from, to time.Time, rate func(time.Time) float64) {
	iv := f.Config().Interval
	for t := from; t.Before(to); t = t.Add(iv) {
		f.Observe(t, Key{Model: "m"}, rate(t)*iv.Seconds(), 0)
	}
	f.Advance(to)
}

func TestDemandLooksAheadToTheDailyPeak(t *testing.T) {
	f, err := New(Config{Interval: time.Minute, MaxHorizon: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Four weeks of days that jump from 10 to 40 req/s at 10:00 for two
	// hours: the seasonal profile learns the jump.
	day0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	rate := func(t time.Time) float64 {
		if h := t.Hour(); h >= 10 && h < 12 {
			return 40
		}
		return 10
	}
	now := day0.AddDate(0, 0, 28).Add(9*time.Hour + 55*time.Minute)
	feedUntil(f, day0, now, rate)

	d := Demand{Forecaster: f}
	before, ok := d.ArrivalRate("m", now.Add(time.Minute))
	if !ok {
		t.Fatal("no forecast for a fed model")
	}
	ahead, ok := d.ArrivalRate("m", now.Add(7*time.Minute))
	if !ok {
		t.Fatal("no forecast 7 minutes ahead")
	}
	// The forecaster weighs its candidates by recent error, and the last
	// value was right all morning, so it sees only part of the jump; twice
	// the calm rate is what it must see.
	if before > 12 || ahead < 2*before {
		t.Fatalf("p90 at 09:56 = %.1f, at 10:02 = %.1f: want the calm rate before 10:00 and at least twice it after", before, ahead)
	}
	if half, _ := (Demand{Forecaster: f, Scale: 0.5}).ArrivalRate("m", now.Add(7*time.Minute)); half != ahead/2 {
		t.Fatalf("Scale 0.5 gave %v, want %v", half, ahead/2)
	}
	if _, ok := d.ArrivalRate("other", now.Add(time.Minute)); ok {
		t.Fatal("forecast for a model never seen")
	}
	if _, ok := d.ArrivalRate("m", now.Add(-time.Hour)); ok {
		t.Fatal("forecast for a closed interval")
	}
	if _, ok := d.ArrivalRate("m", now.Add(2*time.Hour)); ok {
		t.Fatal("forecast beyond MaxHorizon")
	}
	if _, ok := (Demand{Forecaster: emptyForecaster(t)}).ArrivalRate("m", now); ok {
		t.Fatal("forecast from an empty forecaster")
	}
}

func emptyForecaster(t *testing.T) *Forecaster {
	f, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}
