package app

import (
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// What the backends sustain, measured while they were full, survives a
// restart in the forecast snapshot: the restarted gateway plans on it, not
// on the optimistic rate of backends below capacity. Before, at 20 req/s
// on backends sustaining 13 each (16 slots), the restarted plan divided by
// the 31 req/s their below-capacity completions showed: desired 0.79 where
// 1.85 is the need.
func TestRestartKeepsTheMeasuredServiceRate(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default().Forecast
	cfg.Enabled = true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	backends := []string{"b1", "b2"}
	// served feeds the meter as the gateway does: n completions per
	// backend at 16 slots, each holding its slot for held.
	served := func(m *scaling.Meter, from time.Time, n int, held time.Duration, full bool) {
		for i := range n {
			at := from.Add(time.Duration(i) * 50 * time.Millisecond)
			for _, b := range backends {
				m.Served("m", b, at, 100, 16, held, full)
			}
		}
	}
	first, err := newForecastRun(cfg, dir, func() time.Time { return t0 }, log)
	if err != nil {
		t.Fatal(err)
	}
	if !first.fc.Config().Live {
		t.Error("the gateway's forecaster is not live: a stop of its traffic would be taken for a data gap")
	}
	served(first.meter, t0, 400, 16*time.Second/13, true) // 13 req/s per backend at capacity
	first.save()
	first.close()

	second, err := newForecastRun(cfg, dir, func() time.Time { return t0.Add(time.Minute) }, log)
	if err != nil {
		t.Fatal(err)
	}
	// After the restart, 20 req/s: the backends are not full, and their
	// completions are fast (31 req/s per backend at 16 slots).
	now := t0.Add(2 * time.Minute)
	for i := range 200 {
		second.meter.Arrived("m", now.Add(time.Duration(i)*50*time.Millisecond), 100)
	}
	served(second.meter, now, 200, 16*time.Second/31, false)
	now = now.Add(10 * time.Second)
	pool := scaling.PoolState{Backends: []scaling.BackendState{{Name: "b1", Slots: 16, Usable: true}, {Name: "b2", Slots: 16, Usable: true}}, DefaultSlots: 16}
	s := scaling.Plan("m", now, second.meter.Read("m", now, backends), pool, scaling.Policy{Headroom: scaling.DefaultHeadroom, PriorSlotRate: 1})
	t.Logf("after the restart: μ %.1f req/s per backend (restored %v), arrivals %.1f req/s, desired %.2f",
		s.Service.RequestsPerSecond, s.Service.Restored, s.ArrivalRequestsPerSecond, s.DesiredBackends)
	if math.Abs(s.Service.RequestsPerSecond-13) > 0.5 || !s.Service.Restored || !s.Service.AtCapacity {
		t.Errorf("after the restart μ %.1f req/s per backend (restored %v), want the 13 measured at capacity before it", s.Service.RequestsPerSecond, s.Service.Restored)
	}
	if want := s.ArrivalRequestsPerSecond / 13 * (1 + scaling.DefaultHeadroom); s.DesiredBackends < want-0.05 {
		t.Errorf("desired %.2f, want at least %.2f", s.DesiredBackends, want)
	}
	// Saved again before the backends are full again, the figure is kept.
	second.save()
	second.close()
	third, err := newForecastRun(cfg, dir, func() time.Time { return now }, log)
	if err != nil {
		t.Fatal(err)
	}
	third.close()
	if got := third.fc.ServiceRates()["m"]; math.Abs(got.Slots*got.PerSlot-13) > 0.5 {
		t.Errorf("after a second restart the saved service is %+v, want 13 req/s per backend", got)
	}
}
