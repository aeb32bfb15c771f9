package app

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
)

// A reload that removes a model takes its forecast off the metrics, as
// its other per-model series (TestReloadDeletesTheSeriesOfARemovedModel);
// added back, its forecast is exported again, from the history the
// forecaster kept.
func TestReloadTakesARemovedModelsForecastOffTheMetrics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	snap := filepath.Join(dir, "state", "forecast.snapshot")
	seed, err := forecast.New(forecast.Config{Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Minute).Add(-3 * time.Hour)
	for i := range 180 {
		at := start.Add(time.Duration(i) * time.Minute)
		seed.Observe(at, forecast.Key{Model: "keep"}, 300, 3000)
		seed.Observe(at, forecast.Key{Model: "gone"}, 300, 3000)
		seed.Advance(at.Add(time.Minute))
	}
	if err := seed.SaveTo(ctx, forecast.FileStore{Path: snap}); err != nil {
		t.Fatal(err)
	}
	be := backend(t, "b1")
	path := filepath.Join(dir, "sluice.yaml")
	write := func(models ...string) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
			"forecast: {enabled: true, snapshot: %q}\nmodels:\n", snap)
		for _, m := range models {
			fmt.Fprintf(&b, "  - name: %s\n    backends:\n      - url: %s\n", m, be.URL)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("keep", "gone")
	a := newApp(t, path)
	serveApp(t, a) // run, so that its end stops what the build started
	exported := func(model string) bool {
		rec := httptest.NewRecorder()
		a.AdminHandler().ServeHTTP(rec, adminRequest(http.MethodGet, "/metrics"))
		return strings.Contains(rec.Body.String(), `sluice_forecast_requests_per_second{horizon="10m",model="`+model+`",stat="mean"}`)
	}
	reload := func(models ...string) {
		t.Helper()
		write(models...)
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if !exported("keep") || !exported("gone") {
		t.Fatalf("before the reload: forecasts exported keep %v, gone %v; want both", exported("keep"), exported("gone"))
	}
	reload("keep")
	if exported("gone") || !exported("keep") {
		t.Errorf("after the reload that removed gone: forecasts exported keep %v, gone %v; want keep only", exported("keep"), exported("gone"))
	}
	reload("keep", "gone")
	if !exported("gone") {
		t.Errorf("gone added back: its forecast is not exported")
	}
}
