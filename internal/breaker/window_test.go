package breaker

import (
	"testing"
	"time"
)

func TestWindowBuckets(t *testing.T) {
	w := newWindow(10*time.Second, 10)
	w.add(t0, true, false)
	w.add(t0.Add(500*time.Millisecond), false, true)
	w.add(t0.Add(3*time.Second), false, false)
	if got, want := w.sum(t0.Add(3*time.Second)), (Counts{Calls: 3, Failures: 1, Slow: 1}); got != want {
		t.Errorf("sum = %+v, want %+v", got, want)
	}
	// At +10 s the t0 bucket has left the window; the +3 s one has not.
	if got, want := w.sum(t0.Add(10*time.Second)), (Counts{Calls: 1}); got != want {
		t.Errorf("after slide: %+v, want %+v", got, want)
	}
	if got := w.sum(t0.Add(13 * time.Second)); got != (Counts{}) {
		t.Errorf("after full slide: %+v, want empty", got)
	}
}

func TestWindowOutOfOrder(t *testing.T) {
	w := newWindow(10*time.Second, 10)
	w.add(t0.Add(20*time.Second), false, false)
	// A straggler from before the window must not revive a recycled bucket,
	// and one slightly late but inside the window still counts.
	w.add(t0, true, false)
	w.add(t0.Add(15*time.Second), true, false)
	if got, want := w.sum(t0.Add(20*time.Second)), (Counts{Calls: 2, Failures: 1}); got != want {
		t.Errorf("sum = %+v, want %+v", got, want)
	}
	// Summing at an earlier now than the newest sample does not lose it.
	if got := w.sum(t0.Add(19 * time.Second)); got.Calls != 2 {
		t.Errorf("sum at earlier now = %+v, want 2 calls", got)
	}
	w.reset()
	if got := w.sum(t0.Add(20 * time.Second)); got != (Counts{}) {
		t.Errorf("after reset: %+v", got)
	}
}

func TestWindowBeforeEpoch(t *testing.T) {
	w := newWindow(time.Second, 4)
	old := time.Unix(-10, 0)
	w.add(old, true, false)
	w.add(old.Add(-time.Nanosecond), true, false) // previous bucket, floor not truncation
	if got := w.sum(old); got.Calls != 2 {
		t.Errorf("sum = %+v, want 2 calls", got)
	}
}
