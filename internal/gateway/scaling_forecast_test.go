package gateway

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/routing"
	"github.com/sluice-gw/sluice/internal/sim"
)

// stepForecast forecasts `high` requests/s for instants in [from, to),
// `low` otherwise, and remembers the instants asked about.
type stepForecast struct {
	from, to  time.Time
	low, high float64
	mu        sync.Mutex
	asked     []time.Time
}

func (f *stepForecast) ArrivalRate(_ string, at time.Time) (float64, bool) {
	f.mu.Lock()
	f.asked = append(f.asked, at)
	f.mu.Unlock()
	if !at.Before(f.from) && at.Before(f.to) {
		return f.high, true
	}
	return f.low, true
}

// With a forecast, desired backends looks scaling.lead ahead, rises before
// the forecast peak, and falls only scaling.scale_in_hold after the
// forecast dropped.
func TestDesiredBackendsLeadsTheForecastAndHoldsScaleIn(t *testing.T) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Slots: 4}))
	t.Cleanup(be.Close)
	cfg := testConfig(be.URL)
	cfg.Scaling.Lead = config.Duration(3 * time.Minute)
	cfg.Scaling.ScaleInHold = config.Duration(5 * time.Minute)
	t0 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }

	fc := &stepForecast{from: t0.Add(5 * time.Minute), to: t0.Add(8 * time.Minute), low: 1, high: 100}
	reg := prometheus.NewRegistry()
	deps := Deps{Transport: proxy.NewTransportCache(), Now: clock, Rand: routing.NewRand(1), Registry: reg}
	rt, err := Build(cfg, deps, nil)
	if err != nil {
		t.Fatal(err)
	}
	gw := New(rt, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg, Now: clock, Forecast: fc})
	admin := adminServer(t, gw).URL

	desired := func(d time.Duration) float64 {
		set(d)
		return readSignal(t, admin, "m1").DesiredBackends
	}
	calm := desired(time.Minute) // asks about 10:04: the low rate
	if s := readSignal(t, admin, "m1"); s.LeadSeconds != 180 || s.ForecastRequestsPerSecond == nil || *s.ForecastRequestsPerSecond != 1 {
		t.Fatalf("lead %v s, forecast %v: want 180 s and the low rate", s.LeadSeconds, s.ForecastRequestsPerSecond)
	}
	if fc.asked[0] != t0.Add(4*time.Minute) {
		t.Fatalf("asked about %v, want now + scaling.lead = %v", fc.asked[0], t0.Add(4*time.Minute))
	}
	peak := desired(2 * time.Minute) // 10:05: the peak, three minutes early
	if peak < 50*calm {
		t.Fatalf("desired %.2f at 10:02 for a forecast of 100/s at 10:05, %.2f before", peak, calm)
	}
	// Read at 10:03 and 10:04 (asking about 10:06, 10:07: high), then the
	// forecast at lead is low from 10:05 (asks about 10:08); the hold keeps
	// the peak's need until 5 minutes after the last high reading, 10:04.
	for _, at := range []time.Duration{3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 7 * time.Minute, 8*time.Minute + 59*time.Second} {
		if got := desired(at); got != peak {
			t.Fatalf("at +%v desired %.2f, want the peak's %.2f held", at, got, peak)
		}
	}
	if got := desired(9*time.Minute + time.Second); got != calm {
		t.Fatalf("after the hold desired %.2f, want the calm %.2f", got, calm)
	}
}
