package scaling_test

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// A stop of live traffic is demand going to zero, not missing data: the
// gateway counts every request it is sent. With the forecast configured as
// a running gateway configures it (forecast.Config.Live), desired backends
// follows a stop the forecaster has never seen before within two minutes. The
// old code took it for a data gap for forecast.max_gap (4 h): 30 req/s on
// backends sustaining 16 each, stopped after three hours, kept the
// forecast p90 at the old level and 2 backends wanted.
func TestLiveStopIsFollowedWithinMinutes(t *testing.T) {
	fc, err := forecast.New(forecast.Config{Live: true})
	if err != nil {
		t.Fatal(err)
	}
	m := scaling.NewMeter(0)
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	stop := start.Add(3 * time.Hour)
	// 30 req/s, each holding one of 16 slots for 1 s at capacity: the
	// meter sees the last ten minutes, the forecaster all of it.
	for at := start; at.Before(stop); at = at.Add(time.Second / 30) {
		fc.Observe(at, forecast.Key{Model: "m"}, 1, 100)
		if stop.Sub(at) <= 10*time.Minute {
			m.Arrived("m", at, 100)
			m.Served("m", "b1", at, 100, 16, time.Second, true)
		}
	}
	pool := scaling.PoolState{Backends: []scaling.BackendState{{Name: "b1", Slots: 16, Usable: true}, {Name: "b2", Slots: 16, Usable: true}}, DefaultSlots: 16}
	pol := scaling.Policy{Headroom: scaling.DefaultHeadroom, PriorSlotRate: 1, Forecast: forecast.Demand{Forecaster: fc}, Lead: 3 * time.Minute}
	plan := func(now time.Time) scaling.Signal {
		fc.Advance(now)
		return scaling.Plan("m", now, m.Read("m", now, []string{"b1", "b2"}), pool, pol)
	}
	if s := plan(stop); s.DesiredBackends < 2 {
		t.Fatalf("at 30 req/s desired %.2f, want at least 2", s.DesiredBackends)
	}
	for _, d := range []time.Duration{2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, time.Hour} {
		s := plan(stop.Add(d))
		f := -1.0
		if s.ForecastRequestsPerSecond != nil {
			f = *s.ForecastRequestsPerSecond
		}
		t.Logf("%v after the stop: forecast p90 %.2f req/s, desired %.3f", d, f, s.DesiredBackends)
		if s.DesiredBackends > 1 {
			t.Errorf("%v after the stop: desired %.2f (forecast p90 %.1f req/s), want at most 1", d, s.DesiredBackends, f)
		}
	}
}
