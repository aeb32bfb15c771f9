package scaling

import (
	"testing"
	"time"
)

// After the last request the signal reaches 0 within a couple of minutes
// and stays there: an exponential decay alone never does (an hour after
// 30 req/s stopped, desired backends read 6.4e-157, which a scaler rounds
// up to one backend, until float64 underflow about 2 h later). It is never
// negative, NaN or infinite on the way.
func TestIdleSignalSettlesAtZero(t *testing.T) {
	m := NewMeter(0)
	t0 := time.Unix(1_000_000, 0)
	for i := range 300 { // 10 s at 30 req/s, each held 1 s at capacity
		at := t0.Add(time.Duration(i) * time.Second / 30)
		m.Arrived("m", at, 100)
		m.Served("m", "b", at, 100, 16, time.Second, true)
	}
	last := t0.Add(10 * time.Second)
	pool := PoolState{Backends: []BackendState{{Name: "b", Slots: 16, Usable: true}}, DefaultSlots: 8}
	pol := Policy{Headroom: DefaultHeadroom, PriorSlotRate: 1}
	for _, d := range []time.Duration{0, 10 * time.Second, 2 * time.Minute, time.Hour, 24 * time.Hour} {
		now := last.Add(d)
		s := Plan("m", now, m.Read("m", now, []string{"b"}), pool, pol)
		switch {
		case !(s.DesiredBackends >= 0) || s.DesiredBackends > 10:
			t.Errorf("%v after: desired %v", d, s.DesiredBackends)
		case d <= 10*time.Second && s.DesiredBackends == 0:
			t.Errorf("%v after: desired 0 while the demand is still real", d)
		case d >= 2*time.Minute && (s.DesiredBackends != 0 || s.ArrivalRequestsPerSecond != 0 || s.ArrivalTokensPerSecond != 0):
			t.Errorf("%v after: desired %g, arrivals %g req/s, %g tokens/s; want 0", d, s.DesiredBackends, s.ArrivalRequestsPerSecond, s.ArrivalTokensPerSecond)
		}
	}
}
