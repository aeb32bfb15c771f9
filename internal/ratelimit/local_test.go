package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/rate"
)

// Many goroutines share one key on a fake clock that ticks every
// millisecond; at every tick each goroutine tries several times. The
// delivered rate must be exactly the limit in every window, wherever the
// window starts: at most capacity + rate*len in any window (a fixed-window
// counter lets 2x through across a window boundary), and, as demand never
// lets up, exactly rate per second once the initial burst is spent.
func TestLocalDeliveredRateConcurrent(t *testing.T) {
	checkDeliveredRate(t, NewLocalStore(0), 5000, 16, 3)
}

func checkDeliveredRate(t *testing.T, s Store, ticks, goroutines, perTick int) {
	t.Helper()
	l := rate.PerSecond(100, 9).NoDelay() // 10ms per request, burst of 10
	admitted := make([]int, ticks)
	var mu sync.Mutex
	for tick := range ticks {
		now := t0.Add(time.Duration(tick) * time.Millisecond)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range perTick {
					d, err := s.Take(context.Background(), "shared", l, 1, now)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						mu.Lock()
						admitted[tick]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
	}
	total := 0
	for _, n := range admitted {
		total += n
	}
	// Capacity at t=0, then one per 10 ms through the last tick.
	if want := 10 + (ticks-1)/10; total != want {
		t.Fatalf("admitted %d over %dms, want %d", total, ticks, want)
	}
	// Sliding windows of several lengths at every start, by prefix sums.
	prefix := make([]int, ticks+1)
	for i, n := range admitted {
		prefix[i+1] = prefix[i] + n
	}
	for _, w := range []int{1, 10, 250, 999, 1000, 1001, 2500} {
		for start := 0; start+w <= ticks; start++ {
			got := prefix[start+w] - prefix[start]
			// Ticks start..start+w-1 span w-1 ms: at most capacity plus
			// one per full 10ms in between.
			if maxN := 10 + (w-1)/10; got > maxN {
				t.Fatalf("window [%dms, %dms) admitted %d, limit allows %d", start, start+w, got, maxN)
			}
			// After the burst at t=0, one admission every 10 ms exactly.
			if start >= 1 && w >= 10 {
				if minN := (w - 1) / 10; got < minN {
					t.Fatalf("window [%dms, %dms) admitted only %d under constant demand, want >= %d", start, start+w, got, minN)
				}
			}
		}
	}
}

// Many goroutines on many keys at once: per-key accounting stays exact
// under contention (run with -race).
func TestLocalConcurrentKeys(t *testing.T) {
	s := NewLocalStore(0)
	l := mustParse(t, "rate=10r/s burst=20 nodelay")
	keys := []string{"a", "b", "c", "d"}
	served := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			key := keys[g%len(keys)]
			for range 10 {
				d, _ := s.Take(context.Background(), key, l, 1, t0)
				if d.Allowed {
					mu.Lock()
					served[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, k := range keys {
		if served[k] != 21 {
			t.Errorf("key %s served %d of 80 at one instant, want 21", k, served[k])
		}
	}
}
