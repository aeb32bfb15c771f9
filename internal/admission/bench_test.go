package admission

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// BenchmarkQueueUncontended is the fast path every request takes while the
// pool has room: grant at once, release.
func BenchmarkQueueUncontended(b *testing.B) {
	q := NewQueue(QueueConfig{Fair: true}, Static(1<<20).Limit, time.Now)
	ctx := context.Background()
	r := Request{Tenant: "t", Cost: 100}
	for b.Loop() {
		t, err := q.Acquire(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		t.Release()
	}
}

// BenchmarkQueueContended has more goroutines than slots, so most Acquires
// queue and are granted by another goroutine's Release.
func BenchmarkQueueContended(b *testing.B) {
	q := NewQueue(QueueConfig{Fair: true}, Static(4).Limit, time.Now)
	ctx := context.Background()
	b.SetParallelism(8) // 8 × GOMAXPROCS goroutines for 4 slots
	b.RunParallel(func(pb *testing.PB) {
		tenants := []string{"a", "b", "c", "d"}
		i := 0
		for pb.Next() {
			i++
			t, err := q.Acquire(ctx, Request{Tenant: tenants[i%4], Cost: float64(1 + i%1000)})
			if err != nil {
				b.Error(err)
				return
			}
			t.Release()
		}
	})
}

func BenchmarkAdaptiveLimitObserve(b *testing.B) {
	lim := NewAdaptiveLimit(LimitConfig{})
	now := time.Now()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		lim.Observe(now, 50*time.Millisecond, lim.Limit(), outcome.Success)
	}
}
