package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// runParallel runs f(0..n-1) on n goroutines released together, and waits.
func runParallel(t *testing.T, n int, f func(worker int)) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			<-start
			f(w)
		})
	}
	close(start)
	wg.Wait()
}

// TestHalfOpenConcurrentTrials: many goroutines race for trial slots; at no
// moment are more than HalfOpenProbes trials in flight.
func TestHalfOpenConcurrentTrials(t *testing.T) {
	s := testSettings()
	s.HalfOpenProbes = 3
	for round := range 50 {
		b := New(s)
		now := trip(t, b, t0).Add(s.OpenFor)
		var inflight, peak, admitted atomic.Int64
		runParallel(t, 32, func(int) {
			done, ok := b.Allow(now)
			if !ok {
				return
			}
			admitted.Add(1)
			cur := inflight.Add(1)
			for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
			}
			// Hold the slot a little while the others keep asking.
			for range 10 {
				b.Ready(now)
				b.State(now)
			}
			inflight.Add(-1)
			done(now, outcome.Busy, 0) // frees the slot without a verdict
		})
		if peak.Load() > int64(s.HalfOpenProbes) {
			t.Fatalf("round %d: %d trials in flight, limit %d", round, peak.Load(), s.HalfOpenProbes)
		}
		if admitted.Load() == 0 {
			t.Fatalf("round %d: only %d trials admitted", round, admitted.Load())
		}
	}
}

// TestConcurrentMixedLoad hammers one breaker with every operation while the
// fake clock advances, for the race detector and for invariants that must
// hold whatever the interleaving.
func TestConcurrentMixedLoad(t *testing.T) {
	s := testSettings()
	// Transitions are reported under the breaker's lock, so they arrive in
	// order: each must start where the previous one ended, along an edge of
	// the state machine.
	legal := map[[2]State]bool{
		{Closed, Open}: true, {Open, HalfOpen}: true, {HalfOpen, Open}: true, {HalfOpen, Closed}: true,
	}
	last, count := Closed, 0
	s.OnStateChange = func(from, to State) {
		if from != last || !legal[[2]State{from, to}] {
			t.Errorf("transition %v>%v after reaching %v", from, to, last)
		}
		last = to
		count++
	}
	b := New(s)
	var clock atomic.Int64 // fake ms since t0, advanced by worker 0
	// Half of the counted calls fail: enough to cycle through every state.
	outcomes := []ev{evOK, evFail, evFail, evSlow, evBusy, evIgn}
	runParallel(t, 16, func(w int) {
		for i := range 2000 {
			if w == 0 && i%20 == 0 {
				clock.Add(100)
			}
			now := t0.Add(time.Duration(clock.Load()) * time.Millisecond)
			switch i % 4 {
			case 0:
				b.Ready(now)
				b.State(now)
			case 1:
				b.Stats(now)
			default:
				if done, ok := b.Allow(now); ok {
					e := outcomes[(w+i)%len(outcomes)]
					done(now, e.o, e.lat)
				}
			}
		}
	})
	end := t0.Add(time.Duration(clock.Load())*time.Millisecond + time.Hour)
	// Whatever happened, the breaker must still be able to recover.
	for range 10 {
		call(b, end, evOK)
		end = end.Add(time.Hour)
	}
	if got := b.State(end); got != Closed {
		t.Errorf("breaker stuck in %v", got)
	}
	if count < 4 {
		t.Errorf("only %d transitions: the load did not exercise the state machine", count)
	}
}
