package forecast

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ServiceRate is a model's per-backend service measured with its backends
// full (scaling.Meter.Capacities): Slots × PerSlot requests per second,
// Slots × TokensPerSlot tokens per second (0: no usage reported). The
// forecaster only carries it through the snapshot, so that a restarted
// gateway plans on what its backends were seen to sustain instead of the
// optimistic figure of backends not yet full (docs/RELIABILITY.md).
type ServiceRate struct {
	Slots, PerSlot, TokensPerSlot float64
}

// valid reports a rate with slots and a per-slot rate, all finite and
// within the snapshot's bounds.
func (s ServiceRate) valid() bool {
	ok := func(v float64) bool { return v >= 0 && v <= maxStateValue }
	return ok(s.Slots) && ok(s.PerSlot) && ok(s.TokensPerSlot) && s.Slots > 0 && s.PerSlot > 0
}

// SetServiceRates replaces the service rates the next snapshot saves.
// Entries that could not be restored are left out: an empty or over-long
// model name, a rate not positive and finite; beyond MaxSeries entries
// (more models than the forecaster would keep) the rest are dropped.
func (f *Forecaster) SetServiceRates(rates map[string]ServiceRate) {
	kept := make(map[string]ServiceRate, min(len(rates), f.cfg.MaxSeries))
	for name, r := range rates {
		if len(kept) == f.cfg.MaxSeries {
			break
		}
		if name != "" && len(name) <= maxNameLen && r.valid() {
			kept[name] = r
		}
	}
	f.mu.Lock()
	f.services = kept
	f.mu.Unlock()
}

// ServiceRates returns the service rates last set or restored.
func (f *Forecaster) ServiceRates() map[string]ServiceRate {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]ServiceRate, len(f.services))
	for k, v := range f.services {
		out[k] = v
	}
	return out
}

// serviceRecordBytes is the most one service rate takes in a snapshot.
const serviceRecordBytes = 2 + maxNameLen + 3*8

// appendServices encodes the service section (snapshot version 4):
//
//	count u32 | per model: name (u16 length + bytes) | slots, per slot, tokens per slot f64
func appendServices(b []byte, rates map[string]ServiceRate) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rates)))
	for name, r := range rates {
		b = appendString(b, name)
		b = appendF64(b, r.Slots)
		b = appendF64(b, r.PerSlot)
		b = appendF64(b, r.TokensPerSlot)
	}
	return b
}

// services decodes the service section: at most maxCount entries, each
// valid and named once.
func (r *reader) services(maxCount int) map[string]ServiceRate {
	n := r.u32()
	if n > uint32(maxCount) {
		if r.err == nil {
			r.err = fmt.Errorf("%d service rates, more than max_series %d", n, maxCount)
		}
		return nil
	}
	out := make(map[string]ServiceRate, n)
	for range n {
		name := r.str()
		sr := ServiceRate{Slots: r.f64(0), PerSlot: r.f64(0), TokensPerSlot: r.f64(0)}
		if r.err != nil {
			return nil
		}
		if _, dup := out[name]; dup || name == "" || !sr.valid() {
			r.err = errors.New("empty, repeated or invalid service rate")
			return nil
		}
		out[name] = sr
	}
	return out
}
