package scaling

import (
	"testing"
	"time"
)

func TestHoldRisesAtOnceFallsAfterWindow(t *testing.T) {
	h := NewHold()
	t0 := time.Unix(1_000_000, 0)
	w := 5 * time.Minute
	steps := []struct {
		after time.Duration
		v     float64
		want  float64
	}{
		{0, 2, 2},
		{time.Minute, 6, 6},                 // up at once
		{2 * time.Minute, 3, 6},             // held
		{5 * time.Minute, 1, 6},             // 4 min after the 6: still held
		{6*time.Minute + time.Second, 1, 3}, // the 6 left the window; the 3 (at 2m) has not
		{7*time.Minute + time.Second, 1, 1}, // the 3 left too
		{8 * time.Minute, 4, 4},             // never below the value offered now
	}
	for _, s := range steps {
		if got := h.At("m", t0.Add(s.after), s.v, w); got != s.want {
			t.Fatalf("at +%v offered %v: held %v, want %v", s.after, s.v, got, s.want)
		}
	}
	if got := h.At("other", t0, 1, w); got != 1 {
		t.Fatalf("models share a hold: %v", got)
	}
	if got := h.At("m", t0.Add(9*time.Minute), 0.5, 0); got != 0.5 {
		t.Fatalf("window 0 held %v, want the value offered", got)
	}
	h.Keep(func(string) bool { return false })
	if len(h.models) != 0 {
		t.Fatalf("Keep left %d models", len(h.models))
	}
}

func TestHoldMemoryBoundedByFallingValues(t *testing.T) {
	h := NewHold()
	t0 := time.Unix(0, 0)
	for i := range 10_000 {
		h.At("m", t0.Add(time.Duration(i)*time.Second), float64(i%7), time.Minute)
	}
	if n := len(h.models["m"].points); n > 61 {
		t.Fatalf("%d points kept for a 1-minute window of 1 s offers", n)
	}
}
