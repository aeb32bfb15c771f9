package forecast

import (
	"math"
	"testing"
	"time"
)

// halfDay is a gateway that has run only from 00:00 to 12:00, two days:
// 10 req/s until 06:00, 50 after, with an hourly swing of ±30% that only
// the 10-minute profile foresees. Its daily profile knows those hours (the
// morning's 50 is about 1.7 times the slow base), and on the second day the
// seasonal candidate, which foresees the swing and knew the 06:00 step, is
// weighted most. It returns the forecaster after the second day's 12:00.
func halfDay(t *testing.T) *Forecaster {
	t.Helper()
	f := mustNew(t, Config{Interval: time.Minute, Live: true})
	rate := func(i int) float64 {
		swing := 1 + 0.3*math.Sin(2*math.Pi*float64(i)/60)
		if i%1440 < 360 {
			return 10 * swing
		}
		return 50 * swing
	}
	feed(f, 0, 720, rate, nil)
	// Down overnight: restored from its snapshot the next morning.
	g := mustNew(t, Config{Interval: time.Minute, Live: true})
	if err := g.Restore(f.Snapshot()); err != nil {
		t.Fatal(err)
	}
	feed(g, 1440, 1440+720, rate, nil)
	return g
}

// A time of day the profile has never seen has no seasonal deviation
// learned (0), and the old code read that as "the deseasonalised level":
// the seasonal candidate, weighted most here, forecast far below the 50
// req/s traffic had stood at for 6 h for the hour after 12:00 (13.6 req/s
// at the 30 min lead), and the scaler's forecast fell with it, also after a
// restart at 13:00. Unlearned, the profile must not move the forecast.
func TestUnseenTimeOfDayIsNeutral(t *testing.T) {
	g := halfDay(t)
	check := func(when string, f *Forecaster) {
		t.Helper()
		for _, lead := range []time.Duration{3 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
			fc, ok := f.Forecast(m, lead)
			t.Logf("%s: at the %v lead mean %.2f p90 %.2f req/s", when, lead, fc.Requests.Mean, fc.Requests.P90)
			if !ok || fc.Requests.Mean < 35 || fc.Requests.Mean > 65 {
				t.Errorf("%s, traffic 50 req/s ±30%% for 6 h: the forecast at the %v lead is %.2f req/s (%v), want near 50", when, lead, fc.Requests.Mean, ok)
			}
		}
	}
	check("at 12:00 (13:00 never seen)", g)

	// Restarted at 13:00, an hour it has not run at, traffic at 50: the
	// forecast before and after the first minutes stays near 50.
	h := mustNew(t, Config{Interval: time.Minute, Live: true})
	if err := h.Restore(g.Snapshot()); err != nil {
		t.Fatal(err)
	}
	at := t0.Add((1440 + 780) * time.Minute)
	h.Advance(at)
	check("restarted at 13:00", h)
	for range 5 {
		h.Observe(at, m, 50*60, 500*60)
		at = at.Add(time.Minute)
		h.Advance(at)
	}
	check("5 min after the restart", h)
}
