package app

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
)

// /status's forecast-against-actual history keeps closing intervals after
// the clock is stepped back an hour; before, it stood still for the hour.
func TestArrivalHistoryFollowsAClockSteppedBack(t *testing.T) {
	fc, err := forecast.New(forecast.Config{Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := newArrivalHistory(fc)
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for range 3 {
		h.observe(at, "m", 1, 10)
		at = at.Add(time.Minute)
		h.Advance(at)
	}
	points := func() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.models["m"].points) }
	before := points()
	at = at.Add(-time.Hour)
	for range 3 {
		h.observe(at.Add(time.Second), "m", 1, 10)
		at = at.Add(time.Minute)
		h.Advance(at)
	}
	if got := points(); got < before+2 {
		t.Errorf("%d points after 3 minutes past a clock stepped back an hour, %d before: the history stood still", got, before)
	}
}
