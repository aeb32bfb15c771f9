package routing

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

func TestRoundRobinOrder(t *testing.T) {
	bs := mkPool(t, "a", "b", "c")
	p := newPicker(t, "round_robin", 1)
	var got strings.Builder
	for range 9 {
		got.WriteString(p.Pick(&Request{}, bs).Name())
	}
	if got.String() != "abcabcabc" {
		t.Errorf("picks %s, want abcabcabc", got.String())
	}
}

// TestRoundRobinEvenUnderConcurrency: the shared counter hands out exactly
// equal shares even when many goroutines pick at once.
func TestRoundRobinEvenUnderConcurrency(t *testing.T) {
	bs := mkPool(t, "a", "b", "c")
	p := newPicker(t, "round_robin", 1)
	counts := map[*endpoint.Backend]*atomic.Int64{}
	for _, b := range bs {
		counts[b] = &atomic.Int64{}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				counts[p.Pick(&Request{}, bs)].Add(1)
			}
		})
	}
	wg.Wait()
	for _, b := range bs {
		if n := counts[b].Load(); n != 800 {
			t.Errorf("%s picked %d times, want 800", b.Name(), n)
		}
	}
}
