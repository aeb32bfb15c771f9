package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// latencyRecording is a limit that keeps the latencies it is fed.
type latencyRecording struct{ fed []time.Duration }

func (*latencyRecording) Limit() int { return 100 }
func (l *latencyRecording) Observe(_ time.Time, d time.Duration, _ int, _ outcome.Outcome) {
	l.fed = append(l.fed, d)
}
func (*latencyRecording) Ended() {}

// A non-streamed answer's whole generation is its length, not congestion:
// where the engine's batch is known (a reported bound caps the backend),
// the limit learns the answer's time per output token, as the latency
// estimates do; without a known batch it learns the whole generation, its
// only congestion signal, as before; a push-back is learned whole always.
func TestAnswerFeedsTheLimitPerTokenWhereTheBatchIsKnown(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
	l := &latencyRecording{}
	b.SetLimiter(l)

	hold(b, 1)
	b.ReleaseAnswer(clk.t, outcome.Success, 2*time.Second, 50) // no reading: no known batch
	b.ObserveLoad(bounded(clk, 4, 0, 4, 16), clk.now)
	hold(b, 2)
	b.ReleaseAnswer(clk.t, outcome.Success, 2*time.Second, 50)
	b.ReleaseAnswer(clk.t, outcome.Busy, 2*time.Second, 50)
	want := []time.Duration{2 * time.Second, 40 * time.Millisecond, 2 * time.Second}
	if len(l.fed) != len(want) {
		t.Fatalf("fed %v, want %v", l.fed, want)
	}
	for i := range want {
		if l.fed[i] != want[i] {
			t.Fatalf("fed %v, want %v (whole without a known batch, per token beside a reported bound, a push-back whole)", l.fed, want)
		}
	}
}
