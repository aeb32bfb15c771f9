package forecast

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A snapshot file larger than any snapshot the configuration can write
// (junk, or another program's file) is refused before it is read: before,
// FileStore read up to 1 GiB into memory to find it corrupt (957 MB RSS at
// start-up for a 900 MB file, measured through the binary).
func TestHugeSnapshotFileIsRefusedUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "forecast.snapshot")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(200 << 20); err != nil { // sparse: no disk written
		t.Fatal(err)
	}
	f.Close()
	fc := mustNew(t, Config{Interval: time.Minute})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	found, err := fc.LoadFrom(context.Background(), FileStore{Path: path})
	runtime.ReadMemStats(&after)
	if found || err == nil {
		t.Fatalf("a 200 MB junk snapshot: found %v, err %v; want refused", found, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing it allocated %d MB: it was read", grew>>20)
	}
}

// Every snapshot a configuration writes loads back under its bound, with
// the longest names and the most horizons: before, the bound was a fixed
// 1 GiB, which max_series 100000 (about 2.3 GB with a 24h max_horizon)
// outgrew, so such a gateway wrote snapshots it refused at every start.
func TestFullSnapshotFitsItsBound(t *testing.T) {
	cfg := Config{Interval: time.Minute, MaxHorizon: 24 * time.Hour, MaxSeries: 8, MinTenantRate: 0.001}
	fc := mustNew(t, cfg)
	long := strings.Repeat("n", maxNameLen)
	for i := range cfg.MaxSeries {
		fc.Observe(t0, Key{Model: fmt.Sprint(i, long)[:maxNameLen], Tenant: long}, 100, 100)
	}
	fc.Advance(t0.Add(time.Minute))
	rates := map[string]ServiceRate{}
	for i := range cfg.MaxSeries + 3 {
		rates[fmt.Sprint(i, long)[:maxNameLen]] = ServiceRate{Slots: 1e9, PerSlot: 1e9, TokensPerSlot: 1e9}
	}
	fc.SetServiceRates(rates)
	if n := len(fc.ServiceRates()); n != cfg.MaxSeries {
		t.Fatalf("%d service rates kept, want max_series %d", n, cfg.MaxSeries)
	}
	snap := fc.Snapshot()
	bound := fc.Config().MaxSnapshotBytes()
	if len(fc.Keys()) != cfg.MaxSeries || int64(len(snap)) > bound {
		t.Fatalf("%d series, %d bytes; bound %d", len(fc.Keys()), len(snap), bound)
	}
	store := FileStore{Path: filepath.Join(t.TempDir(), "s"), MaxBytes: bound}
	if err := fc.SaveTo(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	if found, err := mustNew(t, cfg).LoadFrom(context.Background(), store); !found || err != nil {
		t.Fatalf("found %v, err %v", found, err)
	}
	big := Config{Interval: time.Minute, MaxHorizon: 24 * time.Hour, MaxSeries: maxSeriesLimit}
	if b := big.MaxSnapshotBytes(); b <= 1<<30 {
		t.Errorf("bound at max_series %d: %d bytes; the check above would not need it", maxSeriesLimit, b)
	}
}

// A name longer than a snapshot keeps (an API key's configured tenant) is
// not forecast: before, its series made every snapshot unreadable, and
// the whole learned state was lost at each restart.
func TestOverlongNameKeepsSnapshotsReadable(t *testing.T) {
	cfg := Config{Interval: time.Minute, MinTenantRate: 0.001}
	fc := mustNew(t, cfg)
	fc.Observe(t0, Key{Model: "m", Tenant: strings.Repeat("t", maxNameLen+1)}, 100, 100)
	fc.Observe(t0, Key{Model: strings.Repeat("m", maxNameLen+1)}, 100, 100)
	fc.Advance(t0.Add(time.Minute))
	if err := mustNew(t, cfg).Restore(fc.Snapshot()); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, ok := fc.Forecast(Key{Model: "m"}, time.Minute); !ok {
		t.Error("the model of the overlong tenant is not forecast")
	}
}
