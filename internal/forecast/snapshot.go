package forecast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"
)

// A snapshot is the forecaster's learned state in a small binary form:
//
//	"SLFC" | version u8 | interval ns i64 | open-interval start unix ns i64 |
//	series count u32 | series... | CRC-32 (IEEE) of everything before, u32
//	series: model name, tenant name (u16 length + bytes) | requests model | tokens model
//	model:  started u8 | gap run u32 | values seen u64 | last, plain, base, level, slope f64 |
//	        144 daily + 1008 weekly f32 |
//	        per daily slot: day of its latest visit i32, values in it u32, their
//	        mean and the day before's f32 (-1: unknown) |
//	        LAD history: open slot i64, its sum f64, values in it u32, closed slots u32,
//	        144 closed slot means f32 | horizon count u8 |
//	        per horizon: steps u32 | 6 candidate errors, q90, spread f64 |
//	        LAD fit: 21 normal-matrix + 6 right-hand + 6 coefficient + mean |residual| f64 |
//	        from version 5: 6 slow candidate errors, 2 combination errors f64 (combine.go)
//	then, from version 4, the service rates (service.go) before the CRC
//
// Version 1 had four candidate errors (no seasonal difference) and version
// 2 five (no LAD member), neither the LAD history nor fits; both are still
// read, so that an upgrade keeps the learned profiles. A missing error
// starts at the worst of those known (a new candidate earns its weight)
// and the LAD member starts unfitted: the last value until it learns.
// Version 3 had no service rates: it restores none. Versions 1 to 4 had
// one combination: the slow errors start as the fast ones and the two
// combinations as equals, so a restored forecast starts where it was.
//
// Little-endian. Forecasts in flight are not kept: after a restart the
// intervals missed are unknown, so their outcomes could not be scored.
const (
	snapshotMagic   = "SLFC"
	snapshotVersion = 5
	// v1Candidates and v2Candidates are the candidate errors in version 1
	// and 2 snapshots.
	v1Candidates  = 4
	v2Candidates  = 5
	maxNameLen    = 1024
	maxStateValue = 1e15 // no rate or error in a sane snapshot comes near
)

// MaxSnapshotBytes is the most a snapshot of a forecaster with this
// configuration can take: MaxSeries series with names of maxNameLen bytes
// (FileStore.MaxBytes). About 25 KB a series (28 KB with a 24h
// max_horizon): 256 series, the default, under 6.5 MB.
func (c Config) MaxSnapshotBytes() int64 {
	c = c.WithDefaults()
	perModel := len(newModel(c.trackedHorizons()).appendTo(nil, snapshotVersion))
	perSeries := 2*(2+maxNameLen) + 2*perModel
	header := len(snapshotMagic) + 1 + 8 + 8 + 4 + 4 + 4 // the service count and the CRC
	return int64(header) + int64(c.MaxSeries)*int64(perSeries+serviceRecordBytes)
}

// ErrIncompatible is returned by Restore for a snapshot taken with another
// interval or format version; the caller starts afresh.
var ErrIncompatible = errors.New("forecast: snapshot from an incompatible configuration")

// Snapshot encodes the learned state.
func (f *Forecaster) Snapshot() []byte { return f.snapshot(snapshotVersion) }

// snapshot encodes in the given format version (1 to 4 only for the test
// that they are still read).
func (f *Forecaster) snapshot(version byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := append([]byte(snapshotMagic), version)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.cfg.Interval))
	var start int64
	if !f.start.IsZero() {
		start = f.start.UnixNano()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(start))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.series)))
	for key, p := range f.series {
		b = appendString(b, key.Model)
		b = appendString(b, key.Tenant)
		b = p.requests.appendTo(b, version)
		b = p.tokens.appendTo(b, version)
	}
	if version >= 4 {
		b = appendServices(b, f.services)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// Restore replaces the learned state with a snapshot's. The intervals
// between the snapshot and the next Observe or Advance are skipped as
// unknown. On error the state is unchanged.
func (f *Forecaster) Restore(data []byte) error {
	start, series, services, err := decodeSnapshot(data, f.cfg, f.horizons)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.series, f.start, f.resumed, f.services = series, start, true, services
	clear(f.splits) // not in the snapshot: relearned (split.go)
	f.clearOpen()
	return nil
}

func decodeSnapshot(data []byte, cfg Config, horizons []int) (time.Time, map[Key]*pair, map[string]ServiceRate, error) {
	bad := func(what string) error { return fmt.Errorf("forecast: corrupt snapshot: %s", what) }
	if len(data) < len(snapshotMagic)+1+8+8+4+4 || string(data[:4]) != snapshotMagic {
		return time.Time{}, nil, nil, bad("not a forecast snapshot")
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return time.Time{}, nil, nil, bad("checksum mismatch")
	}
	r := reader{b: body[4:], cands: nCand, lad: true, slow: true}
	v := r.u8()
	switch v {
	case snapshotVersion:
	case 3, 4:
		r.slow = false
	case 1:
		r.cands, r.lad, r.slow = v1Candidates, false, false
	case 2:
		r.cands, r.lad, r.slow = v2Candidates, false, false
	default:
		return time.Time{}, nil, nil, fmt.Errorf("%w: version %d", ErrIncompatible, v)
	}
	if iv := time.Duration(r.u64()); iv != cfg.Interval {
		return time.Time{}, nil, nil, fmt.Errorf("%w: interval %v, configured %v", ErrIncompatible, iv, cfg.Interval)
	}
	var start time.Time
	if ns := int64(r.u64()); ns != 0 {
		start = time.Unix(0, ns)
	}
	n := r.u32()
	if n > uint32(cfg.MaxSeries) {
		return time.Time{}, nil, nil, bad(fmt.Sprintf("%d series, more than max_series %d", n, cfg.MaxSeries))
	}
	series := make(map[Key]*pair, n)
	for range n {
		key := Key{Model: r.str(), Tenant: r.str()}
		p := &pair{requests: newModel(horizons), tokens: newModel(horizons)}
		r.model(p.requests)
		r.model(p.tokens)
		if r.err != nil {
			return time.Time{}, nil, nil, bad(r.err.Error())
		}
		if _, dup := series[key]; dup || key.Model == "" {
			return time.Time{}, nil, nil, bad("empty or repeated series name")
		}
		series[key] = p
	}
	var services map[string]ServiceRate
	if v >= 4 {
		services = r.services(cfg.MaxSeries)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return time.Time{}, nil, nil, bad(r.err.Error())
	}
	return start, series, services, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// appendTo encodes m in the given format version.
func (m *model) appendTo(b []byte, version byte) []byte {
	cands, lad, slow := nCand, version >= 3, version >= 5
	switch version {
	case 1:
		cands = v1Candidates
	case 2:
		cands = v2Candidates
	}
	started := byte(0)
	if m.started {
		started = 1
	}
	b = append(b, started)
	b = binary.LittleEndian.AppendUint32(b, uint32(m.gapRun))
	b = binary.LittleEndian.AppendUint64(b, m.seen)
	for _, v := range []float64{m.last, m.plain, m.base, m.level, m.slope} {
		b = appendF64(b, v)
	}
	for _, v := range m.daily {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range m.weekly {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for i := range m.slotDay {
		b = binary.LittleEndian.AppendUint32(b, uint32(m.slotDay[i]))
		b = binary.LittleEndian.AppendUint32(b, uint32(m.slotN[i]))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(m.slotMean[i]))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(m.slotPrev[i]))
	}
	if lad {
		b = m.hist.appendTo(b)
	}
	b = append(b, byte(len(m.horizons)))
	for _, h := range m.horizons {
		b = binary.LittleEndian.AppendUint32(b, uint32(h.steps))
		for _, v := range h.err[:cands] {
			b = appendF64(b, v)
		}
		b = appendF64(b, h.q90)
		b = appendF64(b, h.spread)
		if lad {
			b = h.lad.appendTo(b)
		}
		if slow {
			for _, v := range h.errSlow {
				b = appendF64(b, v)
			}
			for _, v := range h.pick {
				b = appendF64(b, v)
			}
		}
	}
	return b
}

func (h *history) appendTo(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(h.slot))
	b = appendF64(b, h.sum)
	b = binary.LittleEndian.AppendUint32(b, uint32(h.n))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.filled))
	for _, v := range h.ring {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func (l *ladFit) appendTo(b []byte) []byte {
	for _, v := range l.a {
		b = appendF64(b, v)
	}
	for _, v := range l.b {
		b = appendF64(b, v)
	}
	for _, v := range l.beta {
		b = appendF64(b, v)
	}
	return appendF64(b, l.mad)
}

// reader decodes a snapshot; the first error sticks and later reads
// return zeros.
type reader struct {
	b     []byte
	err   error
	cands int  // candidate errors per horizon in this version
	lad   bool // the version has the LAD history and fits
	slow  bool // the version has the slow errors and the combinations' (combine.go)
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		if r.err == nil {
			r.err = errors.New("truncated")
		}
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() byte    { return r.take(1)[0] }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }

func (r *reader) str() string {
	n := int(binary.LittleEndian.Uint16(r.take(2)))
	if n > maxNameLen && r.err == nil {
		r.err = fmt.Errorf("name of %d bytes", n)
	}
	return string(r.take(min(n, maxNameLen)))
}

// f64 reads a float and checks it is finite and within bounds.
func (r *reader) f64(lo float64) float64 {
	v := math.Float64frombits(r.u64())
	if !(v >= lo && v <= maxStateValue) && r.err == nil {
		r.err = fmt.Errorf("value %v out of range", v)
	}
	return v
}

// rate32 reads a recorded rate: -1 (unknown) or within [0, maxStateValue].
func (r *reader) rate32() float32 {
	v := math.Float32frombits(r.u32())
	if !(v == -1 || (v >= 0 && float64(v) <= maxStateValue)) && r.err == nil {
		r.err = fmt.Errorf("recorded rate %v out of range", v)
	}
	return v
}

// maxSeasonal bounds a seasonal deviation: the relative errors it averages
// are clamped to [-1, 10], so no profile value can leave [-11, 11].
const maxSeasonal = 20

func (r *reader) f32() float32 {
	v := math.Float32frombits(r.u32())
	if !(float64(v) >= -maxSeasonal && float64(v) <= maxSeasonal) && r.err == nil {
		r.err = fmt.Errorf("seasonal value %v out of range", v)
	}
	return v
}

// model fills m. Horizon statistics are kept only if the snapshot tracked
// the same horizons (a changed max_horizon starts them afresh).
func (r *reader) model(m *model) {
	m.started = r.u8() == 1
	gap := r.u32()
	if gap > 1<<30 && r.err == nil {
		r.err = errors.New("gap run out of range")
	}
	m.gapRun = int(gap)
	m.seen = r.u64()
	m.last, m.plain, m.base, m.level = r.f64(0), r.f64(0), r.f64(0), r.f64(0)
	m.slope = r.f64(-maxStateValue)
	for i := range m.daily {
		m.daily[i] = r.f32()
	}
	for i := range m.weekly {
		m.weekly[i] = r.f32()
	}
	for i := range m.slotDay {
		m.slotDay[i] = int32(r.u32())
		if n := r.u32(); n <= 1<<20 {
			m.slotN[i] = int32(n)
		} else if r.err == nil {
			r.err = errors.New("slot count out of range")
		}
		m.slotMean[i], m.slotPrev[i] = r.rate32(), r.rate32()
	}
	if r.lad {
		r.history(&m.hist)
	}
	nh := int(r.u8())
	stats := make([]horizon, nh)
	same := nh == len(m.horizons)
	for i := range stats {
		stats[i].steps = int(r.u32())
		for j := range stats[i].err[:r.cands] {
			stats[i].err[j] = r.f64(0)
		}
		for j := r.cands; j < nCand; j++ {
			stats[i].err[j] = slices.Max(stats[i].err[:r.cands])
		}
		stats[i].q90, stats[i].spread = r.f64(-maxStateValue), r.f64(0)
		if r.lad {
			r.ladFit(&stats[i].lad)
		}
		stats[i].errSlow, stats[i].pick = stats[i].err, [nCombos]float64{1, 1}
		if r.slow {
			for j := range stats[i].errSlow {
				stats[i].errSlow[j] = r.f64(0)
			}
			for j := range stats[i].pick {
				stats[i].pick[j] = r.f64(0)
			}
		}
		same = same && stats[i].steps == m.horizons[i].steps
	}
	if same && r.err == nil {
		for i := range stats {
			stats[i].due = m.horizons[i].due
			m.horizons[i] = stats[i]
		}
	}
}

// history fills h: counts in range, means and sums finite and not negative.
func (r *reader) history(h *history) {
	h.slot = int64(r.u64())
	h.sum = r.f64(0)
	n, filled := r.u32(), r.u32()
	if (n > 1<<20 || filled > uint32(slotsPerDay)) && r.err == nil {
		r.err = errors.New("LAD history count out of range")
	}
	h.n, h.filled = int32(min(n, 1<<20)), int32(min(filled, uint32(slotsPerDay)))
	for i := range h.ring {
		v := math.Float32frombits(r.u32())
		if !(v >= 0 && float64(v) <= maxStateValue) && r.err == nil {
			r.err = fmt.Errorf("LAD slot mean %v out of range", v)
		}
		h.ring[i] = v
	}
	h.sums()
}

// ladFit fills l; the coefficients are within the bound solve keeps them
// in, so a restored fit forecasts finite rates.
func (r *reader) ladFit(l *ladFit) {
	for i := range l.a {
		l.a[i] = r.f64(-maxStateValue)
	}
	for i := range l.b {
		l.b[i] = r.f64(-maxStateValue)
	}
	for i := range l.beta {
		l.beta[i] = r.f64(-maxStateValue)
		if math.Abs(l.beta[i]) > maxFeature && r.err == nil {
			r.err = fmt.Errorf("LAD coefficient %v out of range", l.beta[i])
		}
	}
	l.mad = r.f64(0)
}
