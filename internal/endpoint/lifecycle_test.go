package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// A backend that joins a running pool ramps its weight and limit from a
// tenth to full over the window, on the injected clock.
func TestSlowStartRampsWeightAndLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	b := mustNew(t, Spec{URL: "http://a:1", Weight: 10, MaxConcurrency: 40}, HealthPolicy{})
	b.SlowStart(10*time.Second, clock)
	for _, c := range []struct {
		at            time.Duration
		weight, limit int
		ramp          float64
	}{
		{0, 1, 4, 0.1},                      // the floor: a tenth
		{500 * time.Millisecond, 1, 4, 0.1}, // still the floor
		{5 * time.Second, 5, 20, 0.5},
		{9 * time.Second, 9, 36, 0.9},
		{10 * time.Second, 10, 40, 1},
		{time.Hour, 10, 40, 1},
	} {
		now = time.Unix(1000, 0).Add(c.at)
		if w, l, r := b.Weight(), b.Limit(), b.RampFactor(); w != c.weight || l != c.limit || r != c.ramp {
			t.Errorf("at %v: weight %d limit %d ramp %v, want %d %d %v", c.at, w, l, r, c.weight, c.limit, c.ramp)
		}
	}
}

// The ramp scales the adaptive limit too, never below one slot, and
// leaves "unlimited" unlimited.
func TestSlowStartScalesAdaptiveLimitNotUnlimited(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	b, _ := New(Spec{URL: "http://a:1"}, HealthPolicy{})
	b.SlowStart(time.Minute, clock)
	if l := b.Limit(); l != 0 {
		t.Fatalf("unlimited backend limited to %d while ramping", l)
	}
	b.SetLimiter(admission.Static(3))
	if l := b.Limit(); l != 1 {
		t.Fatalf("limit %d at the start of the ramp, want 1 (a tenth of 3, at least one)", l)
	}
	if !b.Acquire() {
		t.Fatal("the first request refused under the ramped limit of 1")
	}
	if b.Acquire() {
		t.Fatal("a second request admitted over the ramped limit of 1")
	}
}

func TestRetireEndsTheBackendsContext(t *testing.T) {
	b, _ := New(Spec{URL: "http://a:1"}, HealthPolicy{})
	if b.Context().Err() != nil {
		t.Fatal("a new backend is retired")
	}
	b.Retire()
	if b.Context().Err() == nil {
		t.Fatal("Retire left the context open")
	}
}
