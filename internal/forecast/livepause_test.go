package forecast

import (
	"testing"
	"time"
)

// A live gateway's forecaster is advanced by a ticker every interval, idle
// or not, so intervals with no call at all are time the process did not
// run (SIGSTOP, a paused VM), not demand going to zero. The old code
// counted a pause shorter than max_gap (4 h) as zeros: 30 minutes paused
// at a steady 30 req/s took the p90 at the scaler's 3 min lead to 0.03
// req/s at the first tick after. It then skipped the silent intervals but
// still closed the one open when the pause began as a zero, which the
// last-value forecasts carried: 13.99 req/s, under half the level. The
// interval open at the pause holds only what came before it, so it is
// unknown too.
func TestLivePauseIsUnknownNotZero(t *testing.T) {
	key := Key{Model: "m"}
	steady := func() (*Forecaster, time.Time) {
		f := mustNew(t, Config{Interval: time.Minute, Live: true})
		at := t0
		for i := 0; i < 180; i++ {
			f.Observe(at, key, 1800, 18000) // 30 req/s
			at = at.Add(time.Minute)
			f.Advance(at)
		}
		return f, at
	}
	for name, before := range map[string]float64{
		"paused at an interval's start": 0,
		"paused mid-interval":           600, // 20 s of the interval's 30 req/s counted
	} {
		t.Run(name, func(t *testing.T) {
			f, at := steady()
			if before > 0 {
				f.Observe(at.Add(10*time.Second), key, before, 10*before)
			}
			f.Advance(at.Add(30 * time.Minute)) // the ticker's first tick after the pause
			for _, lead := range []time.Duration{time.Minute, 3 * time.Minute, 10 * time.Minute} {
				fc, ok := f.Forecast(key, lead)
				t.Logf("at the first tick after the pause: at the %v lead mean %.2f p90 %.2f req/s", lead, fc.Requests.Mean, fc.Requests.P90)
				if !ok || fc.Requests.Mean < 27 || fc.Requests.P90 < 27 {
					t.Errorf("after a 30 min pause of the process at a steady 30 req/s the forecast at the %v lead is mean %.2f p90 %.2f req/s (%v), want near 30: the pause is neither zeros nor a short interval", lead, fc.Requests.Mean, fc.Requests.P90, ok)
				}
			}
		})
	}
	// A tick a little late (two intervals closed at once) still counts the
	// silent one as a zero: it is traffic the gateway would have seen.
	f2, at := steady()
	for i := 0; i < 30; i++ { // a real stop, ticks every other interval
		at = at.Add(2 * time.Minute)
		f2.Advance(at)
	}
	if fc, _ := f2.Forecast(key, time.Minute); fc.Requests.Mean > 3 {
		t.Errorf("an hour after a stop with late ticks the forecast is %.1f req/s, want near 0", fc.Requests.Mean)
	}
}
