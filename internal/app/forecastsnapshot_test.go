package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// snapshotClock is the apps' clock in these tests: runOne moves it past
// the interval of its request, so that Run's last save holds a series.
type snapshotClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *snapshotClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *snapshotClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// snapshotApp builds an app from extra (YAML keys) + one model served by
// a loopback backend, logging into the returned buffer, on clock.
func snapshotApp(t *testing.T, clock *snapshotClock, extra, model string) (*App, *logbuf.Buffer) {
	t.Helper()
	be := backend(t, "b1")
	cfg, err := config.Parse([]byte(fmt.Sprintf("listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nadmin: {listen: \"off\"}\n%s\nmodels:\n  - name: %s\n    backends:\n      - url: %s\n",
		extra, model, be.URL)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	a, err := newWithClock(cfg, Source{}, slog.New(slog.NewTextHandler(logs, nil)), clock.Now)
	if err != nil {
		t.Fatalf("the gateway did not start: %v", err)
	}
	return a, logs
}

// runOne runs a, sends one request for model, moves the clock past its
// interval and stops a (Run saves the snapshot when it ends).
func runOne(t *testing.T, a *App, clock *snapshotClock, model string) {
	t.Helper()
	addr, cancel, done := runLoopback(t, a)
	if code, body := chat("http://"+addr, model); code != http.StatusOK {
		t.Errorf("chat: %d %s", code, body)
	}
	clock.add(2 * time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// savedModels are the models in the snapshot at path (nil: none there).
func savedModels(t *testing.T, path string) []string {
	t.Helper()
	f, _ := forecast.New(forecast.Config{Interval: time.Minute})
	found, err := f.LoadFrom(context.Background(), forecast.FileStore{Path: path})
	if err != nil {
		t.Fatalf("snapshot %s: %v", path, err)
	}
	if !found {
		return nil
	}
	var out []string
	for _, k := range f.Keys() {
		if k.Tenant == "" {
			out = append(out, k.Model)
		}
	}
	return out
}

// With no config for it, the forecaster runs and its snapshot goes to the
// data directory: config.DefaultDataDir when queue.data_dir is unset, else
// queue.data_dir; nothing else is written outside it.
func TestForecastOnByDefaultWithItsSnapshotInTheDataDir(t *testing.T) {
	clock := &snapshotClock{now: time.Date(2026, 1, 5, 10, 0, 30, 0, time.UTC)}
	xdg := t.TempDir()
	t.Setenv("XDG_DATA_HOME", xdg)
	a, _ := snapshotApp(t, clock, "queue: {enabled: false}", "m1")
	if a.Forecaster() == nil {
		t.Fatal("no forecaster with the default config")
	}
	runOne(t, a, clock, "m1")
	if got := savedModels(t, filepath.Join(xdg, "sluice", "forecast.snapshot")); len(got) != 1 || got[0] != "m1" {
		t.Errorf("default snapshot holds %v, want [m1]", got)
	}

	own := filepath.Join(t.TempDir(), "data")
	a, _ = snapshotApp(t, clock, fmt.Sprintf("queue: {enabled: false, data_dir: %q}", own), "m2")
	runOne(t, a, clock, "m2")
	if got := savedModels(t, filepath.Join(own, "forecast.snapshot")); len(got) != 1 || got[0] != "m2" {
		t.Errorf("queue.data_dir's snapshot holds %v, want [m2]", got)
	}
	if got := savedModels(t, filepath.Join(xdg, "sluice", "forecast.snapshot")); len(got) != 1 || got[0] != "m1" {
		t.Errorf("with queue.data_dir set, the default directory's snapshot changed: %v", got)
	}
	entries, _ := os.ReadDir(own)
	for _, e := range entries {
		if n := e.Name(); n != "forecast.snapshot" && n != "forecast.snapshot.lock" {
			t.Errorf("left in the data directory: %s", n)
		}
	}
}

// A data directory that cannot be made does not keep the gateway from
// starting or serving: the forecast runs without a snapshot, said once.
func TestForecastSnapshotUnwritableStartsAnyway(t *testing.T) {
	clock := &snapshotClock{now: time.Date(2026, 1, 5, 10, 0, 30, 0, time.UTC)}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, logs := snapshotApp(t, clock, fmt.Sprintf("queue: {enabled: false, data_dir: %q}", filepath.Join(file, "data")), "m1")
	if a.Forecaster() == nil {
		t.Fatal("no forecaster")
	}
	runOne(t, a, clock, "m1")
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "snapshot") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d log lines about the forecast snapshot, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "forecast snapshot off") {
		t.Errorf("the log does not say the snapshot is off:\n%s", logs)
	}
}

// Two gateways on one data directory: the first owns the snapshot, the
// second forecasts without it (said once) and neither restores nor
// overwrites the first's; once the first has stopped, the next gateway
// takes the file over and restores it.
func TestForecastSnapshotOneOwnerPerDataDir(t *testing.T) {
	clock := &snapshotClock{now: time.Date(2026, 1, 5, 10, 0, 30, 0, time.UTC)}
	dir := t.TempDir()
	extra := fmt.Sprintf("queue: {enabled: false, data_dir: %q}", dir)
	first, _ := snapshotApp(t, clock, extra, "m1")
	second, logs := snapshotApp(t, clock, extra, "m2")
	if !strings.Contains(logs.String(), "another sluice gateway owns this snapshot") {
		t.Errorf("the second gateway does not say the snapshot is taken:\n%s", logs)
	}
	runOne(t, second, clock, "m2")
	if got := savedModels(t, filepath.Join(dir, "forecast.snapshot")); got != nil {
		t.Errorf("the second gateway saved %v", got)
	}
	runOne(t, first, clock, "m1")
	if got := savedModels(t, filepath.Join(dir, "forecast.snapshot")); len(got) != 1 || got[0] != "m1" {
		t.Errorf("snapshot holds %v, want the first gateway's [m1]", got)
	}
	third, logs := snapshotApp(t, clock, extra, "m1")
	defer third.release()
	if !strings.Contains(logs.String(), "forecast restored from its snapshot") {
		t.Errorf("the next gateway did not restore the released snapshot:\n%s", logs)
	}
}

// A save that keeps failing (the directory replaced by a file) is logged
// once, not every snapshot_interval; the next save that works says so.
func TestForecastSaveFailureLoggedOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cfg := config.Default().Forecast
	cfg.Snapshot = filepath.Join(dir, "forecast.snapshot")
	logs := &logbuf.Buffer{}
	r, err := newForecastRun(cfg, "", time.Now, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	if r.store == nil {
		t.Fatalf("snapshot not taken:\n%s", logs)
	}
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.save()
	}
	if n := strings.Count(logs.String(), "forecast snapshot not saved"); n != 1 {
		t.Errorf("%d failure lines for 3 failed saves, want 1:\n%s", n, logs)
	}
	os.Remove(dir)
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	r.save()
	r.save()
	if n := strings.Count(logs.String(), "forecast snapshot saved again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
	if _, err := os.Stat(cfg.Snapshot); err != nil {
		t.Errorf("no snapshot after the recovery: %v", err)
	}
}
