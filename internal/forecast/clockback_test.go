package forecast

import (
	"testing"
	"time"
)

// A clock stepped back, or a snapshot written by a clock running ahead,
// must not freeze the forecaster until the wall clock catches up: the
// intervals close again from the new time and the forecast follows the
// traffic seen there.
func TestClockSteppedBackDoesNotFreezeTheForecast(t *testing.T) {
	end := t0.Add(2 * 1440 * time.Minute) // where trained stops
	for name, tc := range map[string]struct {
		back    time.Duration
		restore bool
	}{
		"snapshot from a clock a year ahead": {back: 365 * 24 * time.Hour, restore: true},
		"clock stepped back an hour":         {back: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			f := trained(t)
			if tc.restore {
				g := mustNew(t, Config{Interval: time.Minute})
				if err := g.Restore(f.Snapshot()); err != nil {
					t.Fatal(err)
				}
				f = g
			}
			const rate = 200.0 // four times the trained level
			now := end.Add(-tc.back)
			for range 30 {
				f.Observe(now.Add(time.Second), m, rate*60, 0)
				now = now.Add(time.Minute)
				f.Advance(now)
			}
			fc, ok := f.Forecast(m, time.Minute)
			if !ok || fc.Requests.Mean < 0.6*rate {
				t.Errorf("after 30 min at %.0f/s the forecast is %.1f (ok %v): the forecaster is frozen at the old state", rate, fc.Requests.Mean, ok)
			}
		})
	}
}

// A call a little late (a tick behind, a request stamped at its start) is
// no clock step: the open interval stays where it is.
func TestLateCallIsNoClockStep(t *testing.T) {
	f := trained(t)
	end := t0.Add(2 * 1440 * time.Minute)
	f.Observe(end.Add(-2*time.Minute), m, 60*60, 0)
	f.Advance(end.Add(-maxClockBack + time.Minute))
	if !f.start.Equal(end) {
		t.Errorf("open interval moved to %v after a late call; want %v", f.start, end)
	}
}
