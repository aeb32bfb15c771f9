package telemetry

import (
	"testing"
	"time"
)

// perSecond lines pass each second, the rest are held back and reported
// once, by the first call of a later second; 0 lets every line through.
func TestLineBudget(t *testing.T) {
	b := NewLineBudget()
	t0 := time.Unix(1_800_000_000, 0)
	passed := 0
	for i := range 10 {
		ok, prev := b.Allow(t0.Add(time.Duration(i)*time.Millisecond), 3)
		if ok {
			passed++
		}
		if prev != 0 {
			t.Fatalf("call %d: %d reported held back within the first second", i, prev)
		}
	}
	if passed != 3 {
		t.Fatalf("%d of 10 lines passed in one second, want 3", passed)
	}
	if ok, prev := b.Allow(t0.Add(1500*time.Millisecond), 3); !ok || prev != 7 {
		t.Fatalf("next second: ok %v, previous second's held back %d, want true and 7", ok, prev)
	}
	if ok, prev := b.Allow(t0.Add(1600*time.Millisecond), 3); !ok || prev != 0 {
		t.Fatalf("the count was reported twice: ok %v, prev %d", ok, prev)
	}
	for range 100 {
		if ok, _ := b.Allow(t0, 0); !ok {
			t.Fatal("perSecond 0 held a line back")
		}
	}
}
