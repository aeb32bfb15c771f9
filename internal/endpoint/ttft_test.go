package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

func within(got, want time.Duration) bool {
	return got >= want && float64(got) <= float64(want)*ttftGrowth
}

func TestRecentTTFTQuantiles(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://a"}, HealthPolicy{})
	if got := b.RecentTTFT(at(0)); got != (TTFT{}) {
		t.Fatalf("no sample: %+v", got)
	}
	// 98 fast answers, 2 slow: p50 is the fast one, p99 the slow.
	for i := 0; i < 98; i++ {
		b.Acquire()
		b.Release(at(time.Second), outcome.Success, 40*time.Millisecond, 0)
	}
	for i := 0; i < 2; i++ {
		b.Acquire()
		b.Release(at(time.Second), outcome.Success, 3*time.Second, 0)
	}
	// Failures and busy answers are not latencies of a served request.
	b.Acquire()
	b.Release(at(time.Second), outcome.Failure, time.Hour, 0)
	got := b.RecentTTFT(at(2 * time.Second))
	if got.Samples != 100 || !within(got.P50, 40*time.Millisecond) || !within(got.P99, 3*time.Second) {
		t.Fatalf("RecentTTFT = %+v, want p50 ~40ms, p99 ~3s over 100 samples", got)
	}
	// A stream's first token counts once, not again at its end.
	b.Acquire()
	b.StartWaitingOf(at(3*time.Second), Wait{})
	b.FirstTokenOf(at(3*time.Second), 10*time.Millisecond, Wait{})
	b.ReleaseFed(at(4*time.Second), outcome.Success, 10*time.Millisecond, 0)
	if got := b.RecentTTFT(at(4 * time.Second)); got.Samples != 101 {
		t.Fatalf("after one stream: %d samples, want 101", got.Samples)
	}
	// The window forgets: still there one span later, gone after two.
	if got := b.RecentTTFT(at(time.Second + ttftSpan)); got.Samples != 101 {
		t.Fatalf("one span later: %+v", got)
	}
	if got := b.RecentTTFT(at(time.Second + 2*ttftSpan + time.Second)); got.Samples != 0 {
		t.Fatalf("two spans later: %+v, want forgotten", got)
	}
}

func TestPoolTTFTMergesSamples(t *testing.T) {
	fast := mustNew(t, Spec{URL: "http://fast"}, HealthPolicy{})
	slow := mustNew(t, Spec{URL: "http://slow"}, HealthPolicy{})
	for i := 0; i < 60; i++ {
		fast.Acquire()
		fast.Release(at(time.Second), outcome.Success, 20*time.Millisecond, 0)
	}
	for i := 0; i < 40; i++ {
		slow.Acquire()
		slow.Release(at(time.Second), outcome.Success, 2*time.Second, 0)
	}
	got := PoolTTFT(at(time.Second), []*Backend{fast, slow})
	if got.Samples != 100 || !within(got.P50, 20*time.Millisecond) || !within(got.P99, 2*time.Second) {
		t.Fatalf("PoolTTFT = %+v, want p50 ~20ms, p99 ~2s", got)
	}
}

func TestTTFTBuckets(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, time.Millisecond, 1234 * time.Microsecond, time.Second, 17 * time.Second, 10 * time.Minute} {
		i := ttftBucket(d)
		if d > ttftFirstBound && !(ttftBound(i-1) < d && d <= ttftBound(i)+1) {
			t.Errorf("%v in bucket %d (%v, %v]", d, i, ttftBound(i-1), ttftBound(i))
		}
	}
	if ttftBucket(24*time.Hour) != ttftBuckets-1 {
		t.Error("a day must land in the last bucket")
	}
}
