package forecast

import (
	"testing"
	"time"
)

// A live gateway's forecaster is advanced by a ticker every interval, idle
// or not, so intervals with no call at all are time the process did not
// run (SIGSTOP, a paused VM), not demand going to zero. The old code
// counted a pause shorter than max_gap (4 h) as zeros: 30 minutes paused
// at a steady 30 req/s took the p90 at the scaler's 3 min lead to 0.03 req/s at the first tick after.
func TestLivePauseIsUnknownNotZero(t *testing.T) {
	f := mustNew(t, Config{Interval: time.Minute, Live: true})
	key := Key{Model: "m"}
	at := t0
	for i := 0; i < 180; i++ {
		f.Observe(at, key, 1800, 18000) // 30 req/s
		at = at.Add(time.Minute)
		f.Advance(at)
	}
	f.Advance(at.Add(30 * time.Minute)) // the ticker's first tick after the pause
	fc, ok := f.Forecast(key, 3*time.Minute)
	t.Logf("at the first tick after the pause: p90 %.2f req/s at the 3 min lead", fc.Requests.P90)
	if !ok || fc.Requests.P90 < 10 {
		t.Errorf("after a 30 min pause of the process the p90 at the 3 min lead is %.2f req/s (%v), want the 30 req/s not taken for zeros", fc.Requests.P90, ok)
	}
	// A tick a little late (two intervals closed at once) still counts the
	// silent one as a zero: it is traffic the gateway would have seen.
	f2 := mustNew(t, Config{Interval: time.Minute, Live: true})
	at = t0
	for i := 0; i < 180; i++ {
		f2.Observe(at, key, 1800, 18000)
		at = at.Add(time.Minute)
		f2.Advance(at)
	}
	for i := 0; i < 30; i++ { // a real stop, ticks every other interval
		at = at.Add(2 * time.Minute)
		f2.Advance(at)
	}
	if fc, _ := f2.Forecast(key, time.Minute); fc.Requests.Mean > 3 {
		t.Errorf("an hour after a stop with late ticks the forecast is %.1f req/s, want near 0", fc.Requests.Mean)
	}
}
