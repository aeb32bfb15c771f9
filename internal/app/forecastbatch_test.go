package app

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
)

// batchRun is a forecastRun without a snapshot, started at t0.
func batchRun(t *testing.T, t0 time.Time) *forecastRun {
	t.Helper()
	cfg := config.Default().Forecast
	cfg.Snapshot = "off"
	r, err := newForecastRun(cfg, "", func() time.Time { return t0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	r.advance(t0)
	return r
}

// Arrivals of one model and tenant in a row are summed and passed on to
// the forecaster and the history at once, not counted one by one (each
// took both their locks: ~30 code lines a cache hit); the interval's close
// counts them all, in the interval they arrived in.
func TestArrivalsInARowAreSummedUntilTheClose(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	r := batchRun(t, t0)
	for i := range 3 {
		r.Arrival(t0.Add(time.Duration(i)*time.Second), "m1", "t1", 10)
	}
	r.hist.mu.Lock()
	counted := r.hist.models["m1"].requests
	r.hist.mu.Unlock()
	if counted != 1 {
		t.Errorf("the history's open interval holds %v arrivals before the close, want 1 (the rest summed)", counted)
	}
	iv := r.fc.Config().Interval
	r.advance(t0.Add(iv))
	pts := r.hist.ModelForecast("m1", t0.Add(iv), 0).History
	if len(pts) != 1 || pts[0].RequestsPerSecond*iv.Seconds() != 3 || pts[0].TokensPerSecond*iv.Seconds() != 30 {
		t.Fatalf("the closed interval %+v, want 3 requests and 30 tokens", pts)
	}
}

// Summing arrivals changes nothing the forecaster and the history learn:
// random arrivals (two models, three tenants, some late, some past the
// interval's end before a tick) against a forecaster and a history fed
// one arrival at a time.
func TestArrivalsSummedCountAsOneByOne(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	r := batchRun(t, t0)
	iv := r.fc.Config().Interval
	ref, err := forecast.New(r.fc.Config())
	if err != nil {
		t.Fatal(err)
	}
	refHist := newArrivalHistory(ref)
	ref.Advance(t0)
	refHist.Advance(t0)
	rng := rand.New(rand.NewPCG(1, 2))
	models, tenants := []string{"m1", "m2"}, []string{"", "t1", "t2"}
	now := t0
	for tick := 1; tick <= 40; tick++ {
		for range rng.IntN(400) {
			now = now.Add(time.Duration(rng.IntN(int(iv / 100))))
			at := now
			if rng.IntN(10) == 0 {
				at = at.Add(-iv / 3) // a request's start, lagging
			}
			m, tn := models[min(rng.IntN(8), 1)], tenants[rng.IntN(3)] // mostly m1
			tokens := float64(rng.IntN(500))
			r.Arrival(at, m, tn, tokens)
			ref.Observe(at, forecast.Key{Model: m, Tenant: tn}, 1, tokens)
			refHist.observe(at, m, 1, tokens)
		}
		if end := t0.Add(time.Duration(tick) * iv); now.Before(end) {
			now = end
		}
		r.advance(now)
		ref.Advance(now)
		refHist.Advance(now)
	}
	for _, key := range ref.Keys() {
		for _, h := range []time.Duration{iv, 10 * iv} {
			want, wok := ref.Forecast(key, h)
			got, gok := r.fc.Forecast(key, h)
			if wok != gok || want.Requests != got.Requests || want.Tokens != got.Tokens {
				t.Errorf("%v at %v: forecast %+v (%v), one by one %+v (%v)", key, h, got, gok, want, wok)
			}
		}
	}
	if len(r.fc.Keys()) != len(ref.Keys()) {
		t.Errorf("series %v, one by one %v", r.fc.Keys(), ref.Keys())
	}
	for _, m := range models {
		got, want := r.hist.ModelForecast(m, now, 0).History, refHist.ModelForecast(m, now, 0).History
		if len(got) != len(want) {
			t.Fatalf("%s: %d history points, one by one %d", m, len(got), len(want))
		}
		for i := range got {
			if got[i].At != want[i].At || got[i].RequestsPerSecond != want[i].RequestsPerSecond || got[i].TokensPerSecond != want[i].TokensPerSecond {
				t.Errorf("%s point %d: %+v, one by one %+v", m, i, got[i], want[i])
			}
		}
	}
}
