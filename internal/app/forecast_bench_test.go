package app

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

// arrivalBench is the arrival benchmarks' set-up: a forecast run on the
// default config without a snapshot, closed when the benchmark ends, 16
// tenant names and the start of the benchmark's clock.
func arrivalBench(b *testing.B) (*forecastRun, [16]string, time.Time) {
	b.Helper()
	cfg := config.Default().Forecast
	cfg.Snapshot = "off"
	r, err := newForecastRun(cfg, "", time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.close)
	var tenants [16]string
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%d", i)
	}
	return r, tenants, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
}

// BenchmarkArrival is the forecast's own cost per live request: the
// forecaster's count and /status's history (forecastRun.Arrival), with the
// default config, 16 tenants and the clock moving 6 ms per arrival (10,000
// a minute), so that intervals close as they do in a gateway.
func BenchmarkArrival(b *testing.B) {
	r, tenants, t0 := arrivalBench(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r.Arrival(t0.Add(time.Duration(i)*6*time.Millisecond), "m1", tenants[i%len(tenants)], 500)
		i++
	}
}

// BenchmarkArrivalOneTenant is BenchmarkArrival with every arrival from
// one tenant, as in a benchmark's or one client's burst: the case the
// forecaster's memo of the last tallies serves (forecast.Forecaster.add).
func BenchmarkArrivalOneTenant(b *testing.B) {
	r, tenants, t0 := arrivalBench(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r.Arrival(t0.Add(time.Duration(i)*6*time.Millisecond), "m1", tenants[0], 500)
		i++
	}
}

// BenchmarkArrivalParallel is BenchmarkArrival from GOMAXPROCS goroutines
// at once (b.RunParallel), each with its own clock moving 6 ms per arrival
// from the same start, as a gateway's handlers do: what the count costs
// when arrivals contend.
func BenchmarkArrivalParallel(b *testing.B) {
	r, tenants, t0 := arrivalBench(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Arrival(t0.Add(time.Duration(i)*6*time.Millisecond), "m1", tenants[i%len(tenants)], 500)
			i++
		}
	})
}

// BenchmarkHandlerForecast is the CPU and allocations per proxied
// completion through a whole App's handler (defaults, to an instant
// simulator over loopback; only the client side is a recorder) with the
// forecaster on (the default) and off: their difference is what
// forecasting costs a request. Run with -count to alternate them.
func BenchmarkHandlerForecast(b *testing.B) {
	be := httptest.NewServer(sim.New(sim.Config{Model: "m1", Instant: true}))
	defer be.Close()
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "off"}[on]
		b.Run(name, func(b *testing.B) {
			cfg, err := config.Parse([]byte(fmt.Sprintf("log: {access: false}\nqueue: {enabled: false}\nadmin: {listen: \"off\"}\n"+
				"forecast: {enabled: %v, snapshot: \"off\"}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", on, be.URL)))
			if err != nil {
				b.Fatal(err)
			}
			a, err := New(cfg, Source{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer a.release()
			if (a.Forecaster() != nil) != on {
				b.Fatalf("forecaster %v, want on %v", a.Forecaster(), on)
			}
			h := a.Handler()
			body := `{"model":"m1","messages":[{"role":"user","content":"hello there"}],"max_tokens":4}`
			serve := func() int {
				r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w.Code
			}
			if code := serve(); code != http.StatusOK {
				b.Fatalf("status %d", code)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if code := serve(); code != http.StatusOK {
					b.Fatalf("status %d", code)
				}
			}
		})
	}
}
