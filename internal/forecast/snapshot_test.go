package forecast

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
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
	fc.SetServiceRates(map[string]ServiceRate{"m": {Slots: 16, PerSlot: 0.8, TokensPerSlot: 400}, "other": {Slots: 1, PerSlot: 1e-3}})
	withServices := fc.Snapshot()
	f.Add(good[:len(good)-4], false) // body; the target appends the checksum
	f.Add(good, true)
	f.Add(withServices[:len(withServices)-4], false)
	f.Add(fc.snapshot(3), true)
	f.Add(fc.snapshot(4), true)
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
		rates := g.ServiceRates()
		for name, r := range rates {
			if name == "" || !(r.Slots > 0 && r.PerSlot > 0 && r.TokensPerSlot >= 0) || math.IsInf(r.Slots*r.PerSlot, 0) {
				t.Fatalf("service rate %q: %+v", name, r)
			}
		}
		g.Observe(t0, m, 10, 10)
		g.Advance(t0.Add(time.Minute))
		if err := g.Restore(g.Snapshot()); err != nil {
			t.Fatalf("re-encoded snapshot refused: %v", err)
		}
		if got := g.ServiceRates(); !maps.Equal(got, rates) {
			t.Fatalf("service rates %v re-read as %v", rates, got)
		}
	})
}

// Version 1 and 2 snapshots (four and five candidates, before the
// seasonal difference and the LAD member), version 3 (no service rates)
// and version 4 (one combination of the candidates) are still restored,
// profiles included: an upgrade does not start the forecast afresh. A
// version not known is refused as incompatible.
func TestRestoresOlderSnapshots(t *testing.T) {
	orig := trained(t)
	fresh := mustNew(t, Config{Interval: time.Minute})
	feed(fresh, 2*1440-60, 2*1440, dailyRate, nil) // an hour only: no profile
	orig.SetServiceRates(map[string]ServiceRate{"m": {Slots: 16, PerSlot: 0.8}})
	for _, v := range []byte{1, 2, 3, 4} {
		restored := mustNew(t, Config{Interval: time.Minute})
		if err := restored.Restore(orig.snapshot(v)); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if got := restored.ServiceRates(); v < 4 && len(got) != 0 {
			t.Errorf("version %d: service rates %v, want none", v, got)
		}
		if got := restored.series[m].requests.horizons[0].lad; v < 3 && got != (ladFit{}) {
			t.Errorf("version %d: LAD fit %+v, want none", v, got)
		}
		for _, h := range []time.Duration{10 * time.Minute, time.Hour} {
			a, _ := orig.Forecast(m, h)
			b, _ := restored.Forecast(m, h)
			c, _ := fresh.Forecast(m, h)
			t.Logf("version %d, horizon %v: original %.2f, restored %.2f, fresh %.2f", v, h, a.Requests.Mean, b.Requests.Mean, c.Requests.Mean)
			if math.Abs(b.Requests.Mean-a.Requests.Mean) > 0.02*a.Requests.Mean {
				t.Errorf("version %d, horizon %v: restored %.2f, original %.2f", v, h, b.Requests.Mean, a.Requests.Mean)
			}
		}
	}
	if got := orig.snapshot(4); len(got) >= len(orig.Snapshot()) {
		t.Errorf("version 4 is %d bytes, the current %d: the new fields are not in it", len(got), len(orig.Snapshot()))
	}
	v6 := orig.snapshot(6)
	if err := fresh.Restore(v6); !errors.Is(err, ErrIncompatible) {
		t.Errorf("version 6: %v, want ErrIncompatible", err)
	}
}

// The LAD member's history and fits, and the slow combination's errors,
// survive a snapshot: a restored forecaster holds the same state and
// forecasts what the original did.
func TestSnapshotKeepsTheLADFit(t *testing.T) {
	orig := mustNew(t, Config{Interval: 10 * time.Minute})
	rate := momentumSeries(3)
	feed(orig, 0, 6*144, rate, nil)
	restored := mustNew(t, Config{Interval: 10 * time.Minute})
	if err := restored.Restore(orig.Snapshot()); err != nil {
		t.Fatal(err)
	}
	a, b := orig.series[m].requests, restored.series[m].requests
	if a.hist != b.hist {
		t.Errorf("LAD history: restored %+v, original %+v", b.hist, a.hist)
	}
	for i := range a.horizons {
		if a.horizons[i].errSlow != b.horizons[i].errSlow || a.horizons[i].pick != b.horizons[i].pick {
			t.Errorf("horizon %d: slow errors and combination errors restored %v %v, original %v %v", a.horizons[i].steps,
				b.horizons[i].errSlow, b.horizons[i].pick, a.horizons[i].errSlow, a.horizons[i].pick)
		}
		if a.horizons[i].lad.beta == ([nFeat]float64{}) {
			t.Fatalf("horizon %d: the LAD member learned nothing", a.horizons[i].steps)
		}
		if a.horizons[i].lad != b.horizons[i].lad {
			t.Errorf("horizon %d: LAD fit restored %+v, original %+v", a.horizons[i].steps, b.horizons[i].lad, a.horizons[i].lad)
		}
	}
	for _, h := range []time.Duration{10 * time.Minute, time.Hour} {
		x, _ := orig.Forecast(m, h)
		y, _ := restored.Forecast(m, h)
		if x != y {
			t.Errorf("horizon %v: restored %+v, original %+v", h, y, x)
		}
	}
}
