package app

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
)

// BenchmarkForecastArrival is what forecast.enabled adds to every live
// request: the demand stage's Arrival (the forecaster's model and tenant
// tallies, /status's history), on the defaults, one model, 64 tenants,
// time moving 1 ms a request so intervals close as they do in service.
func BenchmarkForecastArrival(b *testing.B) {
	cfg := config.Default().Forecast
	cfg.Enabled, cfg.Snapshot = true, "off"
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	r, err := newForecastRun(cfg, b.TempDir(), func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	tenants := make([]string, 64)
	for i := range tenants {
		tenants[i] = "ip:10.0.0." + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		now = now.Add(time.Millisecond)
		r.Arrival(now, "m1", tenants[i%len(tenants)], 120)
	}
}
