package forecast

import (
	"testing"
	"time"
)

// A snapshot restored long after it was written (a gateway down for a
// day, or restored from last year's backup) holds a level older than
// max_gap: a rate far below it is believed at once, not skipped as a data
// gap for max_gap more (4 h by default), during which the forecast, and
// desired backends with it, stayed at the old level.
func TestStaleSnapshotDoesNotHoldTheOldLevel(t *testing.T) {
	for name, away := range map[string]time.Duration{"a day": 24 * time.Hour, "a year": 365 * 24 * time.Hour} {
		t.Run(name, func(t *testing.T) {
			f := mustNew(t, Config{Interval: time.Minute})
			if err := f.Restore(trained(t).Snapshot()); err != nil {
				t.Fatal(err)
			}
			const rate = 1.0 // a fiftieth of the trained level
			now := t0.Add(2*1440*time.Minute + away)
			for range 30 {
				f.Observe(now.Add(time.Second), m, rate*60, 0)
				now = now.Add(time.Minute)
				f.Advance(now)
			}
			if fc, _ := f.Forecast(m, time.Minute); fc.Requests.P90 > 10*rate {
				t.Errorf("after 30 min at %.0f/s the forecast p90 is %.1f: the old level holds", rate, fc.Requests.P90)
			}
		})
	}
}
