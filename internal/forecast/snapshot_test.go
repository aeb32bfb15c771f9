package forecast

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"path/filepath"
	"testing"
	"time"
)

func dailyRate(i int) float64 { return 50 + 20*math.Sin(2*math.Pi*float64(i)/1440) }

// trained is a forecaster fed two days of a daily cycle, per minute.
func trained(t *testing.T) *Forecaster {
	f := mustNew(t, Config{Interval: time.Minute})
	feed(f, 0, 2*1440, dailyRate, nil)
	return f
}

// A restored forecaster forecasts what the original did, and the
// intervals missed while it was down are skipped, not taken for zeros.
func TestSnapshotRoundTripThroughAFile(t *testing.T) {
	ctx := context.Background()
	orig := trained(t)
	store := FileStore{Path: filepath.Join(t.TempDir(), "forecast", "state.bin")}
	restored := mustNew(t, Config{Interval: time.Minute})
	if found, err := restored.LoadFrom(ctx, store); found || err != nil {
		t.Fatalf("empty store: found %v, err %v", found, err)
	}
	if err := orig.SaveTo(ctx, store); err != nil {
		t.Fatal(err)
	}
	if found, err := restored.LoadFrom(ctx, store); !found || err != nil {
		t.Fatalf("load: found %v, err %v", found, err)
	}
	for _, h := range []time.Duration{time.Minute, 10 * time.Minute, time.Hour} {
		a, _ := orig.Forecast(m, h)
		b, ok := restored.Forecast(m, h)
		if !ok || a != b {
			t.Errorf("horizon %v: restored %+v, original %+v", h, b, a)
		}
	}
	// Down for three hours: no zeros learned, the level is still about 50.
	at := t0.Add(2*1440*time.Minute + 3*time.Hour)
	restored.Observe(at, m, dailyRate(2*1440+180)*60, 0)
	restored.Advance(at.Add(time.Minute))
	if fc, _ := restored.Forecast(m, time.Minute); fc.Requests.Mean < 30 {
		t.Errorf("after a restart the forecast is %.1f, want about 50: the downtime was taken for zeros", fc.Requests.Mean)
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	orig := trained(t)
	good := orig.Snapshot()
	other := mustNew(t, Config{Interval: 10 * time.Minute})
	if err := other.Restore(good); !errors.Is(err, ErrIncompatible) {
		t.Errorf("another interval: %v, want ErrIncompatible", err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	f := mustNew(t, Config{Interval: time.Minute})
	for name, b := range map[string][]byte{"flipped bit": flipped, "truncated": good[:len(good)-9], "empty": nil, "junk": []byte("SLFCxxxxxxxxxxxxxxxxxxxxxxxxxxxx")} {
		if err := f.Restore(b); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	if len(f.Keys()) != 0 {
		t.Error("a failed restore changed the state")
	}
}

// FuzzRestore: the decoder of stored snapshots never panics, and what it
// accepts forecasts finite, non-negative rates and encodes again.
func FuzzRestore(f *testing.F) {
	fc, _ := New(Config{Interval: time.Minute, MaxHorizon: 10 * time.Minute})
	feed(fc, 0, 30, dailyRate, nil)
	good := fc.Snapshot()
	f.Add(good[:len(good)-4], false) // body; the target appends the checksum
	f.Add(good, true)
	f.Add([]byte{}, true)
	f.Add([]byte("SLFC\x01"), false)
	f.Fuzz(func(t *testing.T, data []byte, asIs bool) {
		if !asIs {
			// Let mutations reach past the checksum.
			data = binary.LittleEndian.AppendUint32(data[:len(data):len(data)], crc32.ChecksumIEEE(data))
		}
		g, _ := New(Config{Interval: time.Minute, MaxHorizon: 10 * time.Minute})
		if err := g.Restore(data); err != nil {
			return
		}
		for _, k := range g.Keys() {
			for _, h := range []time.Duration{time.Minute, 10 * time.Minute} {
				got, _ := g.Forecast(k, h)
				for _, v := range []float64{got.Requests.Mean, got.Requests.P90, got.Tokens.Mean, got.Tokens.P90} {
					if !(v >= 0) || math.IsInf(v, 0) {
						t.Fatalf("%+v: forecast %v", k, got)
					}
				}
			}
		}
		g.Observe(t0, m, 10, 10)
		g.Advance(t0.Add(time.Minute))
		if err := g.Restore(g.Snapshot()); err != nil {
			t.Fatalf("re-encoded snapshot refused: %v", err)
		}
	})
}

// A version 1 snapshot (four candidates, before the seasonal difference)
// is still restored, profiles included: an upgrade does not start the
// forecast afresh. A version not known is refused as incompatible.
func TestRestoresVersion1Snapshots(t *testing.T) {
	orig := trained(t)
	restored := mustNew(t, Config{Interval: time.Minute})
	if err := restored.Restore(orig.snapshot(1)); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	fresh := mustNew(t, Config{Interval: time.Minute})
	feed(fresh, 2*1440-60, 2*1440, dailyRate, nil) // an hour only: no profile
	for _, h := range []time.Duration{10 * time.Minute, time.Hour} {
		a, _ := orig.Forecast(m, h)
		b, _ := restored.Forecast(m, h)
		c, _ := fresh.Forecast(m, h)
		t.Logf("horizon %v: original %.2f, restored from v1 %.2f, fresh %.2f", h, a.Requests.Mean, b.Requests.Mean, c.Requests.Mean)
		if math.Abs(b.Requests.Mean-a.Requests.Mean) > 0.02*a.Requests.Mean {
			t.Errorf("horizon %v: restored from version 1 %.2f, original %.2f", h, b.Requests.Mean, a.Requests.Mean)
		}
	}
	v3 := orig.snapshot(3)
	if err := restored.Restore(v3); !errors.Is(err, ErrIncompatible) {
		t.Errorf("version 3: %v, want ErrIncompatible", err)
	}
}
