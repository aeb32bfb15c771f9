package scaling

import (
	"testing"
	"time"
)

// feed sends arrivals to the meter at rate(t) per second (t from start),
// evenly spaced, from `from` to `to`, calling each(t) at every whole second.
func feed(m *Meter, start time.Time, from, to time.Duration, rate func(t time.Duration) float64, each func(t time.Duration)) {
	t, owed := from, 0.0
	const step = 10 * time.Millisecond
	for t < to {
		t += step
		owed += rate(t) * step.Seconds()
		for ; owed >= 1; owed-- {
			m.Arrived("m", start.Add(t), 1)
		}
		if t%time.Second == 0 && each != nil {
			each(t)
		}
	}
}

// twoBackends is a pool of two backends, each measured at capacity at
// 10 req/s (10 slots, a second per request).
func twoBackends(r Reading) (Reading, PoolState) {
	r.Service = map[string]Service{"a": {PerSlot: 1, Slots: 10, AtCapacity: true}, "b": {PerSlot: 1, Slots: 10, AtCapacity: true}}
	return r, PoolState{Backends: []BackendState{{Name: "a", Slots: 10, Usable: true}, {Name: "b", Slots: 10, Usable: true}}}
}

// On a ramp the need counts how far the arrivals of half a window have
// run above the measured rate, so it crosses the pool's size seconds
// before the same plan without that term; steady demand adds nothing.
func TestBurstTermLeadsARampAndAddsNothingWhenSteady(t *testing.T) {
	m := NewMeter(10 * time.Second)
	pol := Policy{Headroom: DefaultHeadroom}
	steady := func(time.Duration) float64 { return 10 }
	feed(m, t0, 0, 60*time.Second, steady, func(at time.Duration) {
		r := m.Read("m", t0.Add(at), nil)
		if r.ArrivalsBurst > 0.05 {
			t.Fatalf("steady demand at t=%s reads a burst of %.3f", at, r.ArrivalsBurst)
		}
	})
	// Demand ramps from 10 to 40 req/s over a minute; the pool serves 20.
	ramp := func(at time.Duration) float64 { return 10 + 0.5*(at-60*time.Second).Seconds() }
	crossWith, crossWithout := time.Duration(-1), time.Duration(-1)
	feed(m, t0, 60*time.Second, 120*time.Second, ramp, func(at time.Duration) {
		r, ps := twoBackends(m.Read("m", t0.Add(at), nil))
		with := Plan("m", t0.Add(at), r, ps, pol)
		r.ArrivalsBurst = 0
		without := Plan("m", t0.Add(at), r, ps, pol)
		if crossWith < 0 && with.DesiredBackends > 2 {
			crossWith = at
		}
		if crossWithout < 0 && without.DesiredBackends > 2 {
			crossWithout = at
		}
		if got := with.Need.Demand + with.Need.Headroom + with.Need.Burst + with.Need.Queue; got != with.DesiredBackends {
			t.Fatalf("desired %.3f is not the sum of its terms %.3f", with.DesiredBackends, got)
		}
	})
	if crossWith < 0 || crossWithout < 0 || crossWithout-crossWith < 4*time.Second {
		t.Fatalf("need above the pool at t=%s with the burst term, %s without: want it at least 4 s earlier", crossWith, crossWithout)
	}
}

// The rates start from 0 and read low for a few windows; that warm-up is
// not a burst, so a gateway starting under steady demand plans for it alone.
func TestBurstIgnoresTheRatesWarmUp(t *testing.T) {
	m := NewMeter(10 * time.Second)
	feed(m, t0, 0, 90*time.Second, func(time.Duration) float64 { return 20 }, func(at time.Duration) {
		if b := m.Read("m", t0.Add(at), nil).ArrivalsBurst; b > 0.05 {
			t.Fatalf("burst %.3f at t=%s of a steady start", b, at)
		}
	})
}

// A step from a trickle reads as at most maxBurst, and once demand has
// fallen the burst term fades: the need falls below the pool with it.
func TestBurstIsCappedAndFadesAfterADrop(t *testing.T) {
	m := NewMeter(10 * time.Second)
	pol := Policy{Headroom: DefaultHeadroom}
	feed(m, t0, 0, 40*time.Second, func(time.Duration) float64 { return 1 }, nil)
	feed(m, t0, 40*time.Second, 70*time.Second, func(time.Duration) float64 { return 30 }, nil)
	r := m.Read("m", t0.Add(70*time.Second), nil)
	if r.ArrivalsBurst <= 0.5 || r.ArrivalsBurst > maxBurst {
		t.Fatalf("a step to 30x reads a burst of %.3f, want in (0.5, %g]", r.ArrivalsBurst, maxBurst)
	}
	fell := time.Duration(-1)
	feed(m, t0, 70*time.Second, 130*time.Second, func(time.Duration) float64 { return 5 }, func(at time.Duration) {
		r, ps := twoBackends(m.Read("m", t0.Add(at), nil))
		if s := Plan("m", t0.Add(at), r, ps, pol); fell < 0 && s.DesiredBackends < 2 {
			fell = at
		}
	})
	if fell < 0 || fell > 100*time.Second {
		t.Fatalf("need below the pool at t=%s after demand fell to 5 req/s at t=70s, want within 3 windows", fell)
	}
}

// Unread, the memory holds no sample older than burstMemory windows, even
// when every sample's excess is below the last (nothing is popped).
func TestBurstMemoryIsBoundedWithoutReads(t *testing.T) {
	window := 10 * time.Second
	var b burst
	stride := burstHorizon(window) / burstStride
	for i := range 1000 {
		b.remember(t0.Add(time.Duration(i)*stride), 1-float64(i)/2000, window)
	}
	limit := int(burstMemory*window/stride) + 1
	if n := len(b.highs); n == 0 || n > limit {
		t.Fatalf("%d samples remembered, want 1..%d", n, limit)
	}
}
