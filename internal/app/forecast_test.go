package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
)

// The forecaster is restored from its snapshot when the app is built,
// exported on the admin listener's metrics, fed by live requests and saved
// again when Run ends.
func TestForecastRestoredExportedAndSaved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	snap := filepath.Join(dir, "state", "forecast.snapshot")
	m1 := forecast.Key{Model: "m1"}

	// Three hours of 5 req/s for m1, saved where the config points.
	seed, err := forecast.New(forecast.Config{Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Minute).Add(-3 * time.Hour)
	for i := range 180 {
		at := start.Add(time.Duration(i) * time.Minute)
		seed.Observe(at, m1, 300, 3000)
		seed.Advance(at.Add(time.Minute))
	}
	if err := seed.SaveTo(ctx, forecast.FileStore{Path: snap}); err != nil {
		t.Fatal(err)
	}

	be := backend(t, "b1")
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nadmin: {listen: \"off\"}\n"+
		"forecast: {enabled: true, snapshot: %q}\nmodels:\n  - name: m1\n    backends:\n      - url: %s\n", snap, be.URL)
	writeFile(t, path, src)
	a := newApp(t, path)
	f, ok := a.Forecaster().Forecast(m1, 10*time.Minute)
	if !ok || math.Abs(f.Requests.Mean-5) > 0.1 || math.Abs(f.Tokens.Mean-50) > 1 {
		t.Fatalf("restored forecast %+v (%v), want about 5 req/s and 50 tokens/s", f, ok)
	}
	rec := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(rec, adminRequest(http.MethodGet, "/metrics"))
	if want := `sluice_forecast_requests_per_second{horizon="10m",model="m1",stat="p90"}`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("admin /metrics has no %s", want)
	}

	os.Remove(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, ln) }()
	if code, body := chat("http://"+ln.Addr().String(), "m1"); code != http.StatusOK {
		t.Fatalf("chat: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	again, _ := forecast.New(forecast.Config{Interval: time.Minute})
	if found, err := again.LoadFrom(ctx, forecast.FileStore{Path: snap}); !found || err != nil {
		t.Fatalf("no snapshot saved at shutdown: found %v, err %v", found, err)
	}
	if _, ok := again.Forecast(m1, time.Minute); !ok {
		t.Errorf("the saved snapshot has no series for m1: %v", again.Keys())
	}
}

// A snapshot that cannot be decoded does not keep the gateway from
// starting: the forecast starts afresh.
func TestForecastIgnoresACorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	snap := filepath.Join(dir, "forecast.snapshot")
	os.WriteFile(snap, []byte("SLFC garbage"), 0o600)
	path := filepath.Join(dir, "sluice.yaml")
	src := fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\n"+
		"forecast: {enabled: true, snapshot: %q}\nmodels:\n  - name: m1\n    backends:\n      - url: http://127.0.0.1:1\n", snap)
	os.WriteFile(path, []byte(src), 0o600)
	a := newApp(t, path)
	if a.Forecaster() == nil || len(a.Forecaster().Keys()) != 0 {
		t.Errorf("forecaster %v", a.Forecaster())
	}
	a.release()
}

// The loop closes an interval on each tick, so arrivals become a rate, and
// saves on the snapshot interval and when its context ends. Time and
// ticks are the test's.
func TestForecastLoop(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default().Forecast
	cfg.Enabled, cfg.SnapshotInterval = true, config.Duration(2*time.Minute)
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	now := t0
	r, err := newForecastRun(cfg, dir, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	ticks := make(chan time.Time)
	r.tick = func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	ticks <- now // taken once the loop has read the clock; it reads it again only when ctx ends

	snap := filepath.Join(dir, "forecast.snapshot")
	for i := range 3 {
		for range 120 {
			r.Arrival(now, "m1", "t1", 100)
		}
		now = now.Add(time.Minute)
		ticks <- now
		ticks <- now // the loop has handled the first tick once the second is taken
		if _, err := os.Stat(snap); (err == nil) != (i >= 1) {
			t.Errorf("after minute %d: snapshot present %v, want it from minute 2 (snapshot_interval)", i+1, err == nil)
		}
	}
	f, ok := r.fc.Forecast(forecast.Key{Model: "m1"}, time.Minute)
	if !ok || math.Abs(f.Requests.Mean-2) > 1e-9 || math.Abs(f.Tokens.Mean-200) > 1e-9 {
		t.Errorf("forecast %+v (%v), want 2 req/s and 200 tokens/s", f, ok)
	}
	if _, ok := r.fc.Forecast(forecast.Key{Model: "m1", Tenant: "t1"}, time.Minute); !ok {
		t.Error("the tenant at 2 req/s has no forecast of its own")
	}
	os.Remove(snap)
	cancel()
	<-done
	if _, err := os.Stat(snap); err != nil {
		t.Errorf("no snapshot saved when the loop ended: %v", err)
	}
}

// adminRequest is a request to the admin handler from this host's
// loopback, addressed by IP, as every admin request is without
// admin.token (httptest.NewRequest's peer, 192.0.2.1, is another host's;
// its Host, example.com, a name that could be a rebinding page's).
func adminRequest(method, path string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr, r.Host = "127.0.0.1:40000", "127.0.0.1:9091"
	return r
}
