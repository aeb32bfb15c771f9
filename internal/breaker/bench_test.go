package breaker

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// TestClosedPathDoesNotAllocate pins the promise the benchmark measures.
func TestClosedPathDoesNotAllocate(t *testing.T) {
	b := New(Settings{})
	allocs := testing.AllocsPerRun(1000, func() {
		done, ok := b.Allow(t0)
		if !ok {
			t.Fatal("refused")
		}
		done(t0, outcome.Success, time.Millisecond)
		b.Ready(t0)
	})
	if allocs != 0 {
		t.Errorf("closed Allow+done+Ready: %v allocs, want 0", allocs)
	}
}

func BenchmarkAllowDoneClosed(b *testing.B) {
	br := New(Settings{})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		done, _ := br.Allow(now)
		done(now, outcome.Success, time.Millisecond)
	}
}

func BenchmarkAllowDoneClosedParallel(b *testing.B) {
	br := New(Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, _ := br.Allow(t0)
			done(t0, outcome.Success, time.Millisecond)
		}
	})
}

func BenchmarkReadyClosed(b *testing.B) {
	br := New(Settings{})
	b.ReportAllocs()
	for b.Loop() {
		br.Ready(t0)
	}
}

func BenchmarkAllowOpen(b *testing.B) {
	br := New(Settings{MinRequests: 1})
	done, _ := br.Allow(t0)
	done(t0, outcome.Failure, 0)
	b.ReportAllocs()
	for b.Loop() {
		br.Allow(t0)
	}
}
