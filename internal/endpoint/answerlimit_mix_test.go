package endpoint

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/outcome"
)

// gatewayLimit is the adaptive limit as the gateway builds it for a pool
// with the default 2s objective (app.newAdaptiveLimit), on clk's time.
func gatewayLimit(clk *fakeClock) *admission.AdaptiveLimit {
	return admission.NewAdaptiveLimit(admission.LimitConfig{
		LatencyFloor: 200 * time.Millisecond, ReportsEnds: true, Clock: clk.now,
	})
}

// busySecond drives one second of traffic with the backend at its limit:
// streams whose first token takes ttft and non-streamed answers of whole
// over 50 tokens, after a fresh reading of an engine that reports a batch
// bound of 16 (so a cap of 18 applies).
func busySecond(b *Backend, clk *fakeClock, streams, answers int, ttft, whole time.Duration) {
	b.ObserveLoad(bounded(clk, 16, 0, 16, 16), clk.now)
	n := streams + answers
	step := time.Second / time.Duration(n)
	for i := range n {
		clk.t = clk.t.Add(step)
		hold(b, b.Limit())
		if i < streams {
			b.FirstTokenOf(clk.t, ttft, Wait{})
			b.ReleaseFed(clk.t, outcome.Success, ttft, 0)
		} else {
			b.ReleaseAnswer(clk.t, outcome.Success, whole, 50)
		}
	}
}

// In a mix of streams and about 30% non-streamed answers of 2s, with no
// congestion at all (latencies flat whatever the load), the real adaptive
// limit keeps the backend at its cap (16 slots and the handover): each
// answer's per-token time sits under the streams' first tokens, not 5-13x
// over them. Fed whole generations (before idleslots) the windows with
// more answers read as congestion and held the limit at a mean of 3.3
// (first tokens of 150ms) and 11.8 (400ms) of 18. Window shares are drawn
// from a fixed seed: deterministic.
func TestAnswersInAStreamMixKeepTheLimitAtTheCap(t *testing.T) {
	for _, ttft := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond} {
		clk := &fakeClock{t: t0}
		b := mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{})
		l := gatewayLimit(clk)
		b.SetLimiter(l)
		r := rand.New(rand.NewPCG(1, 2))
		sum, n := 0, 0
		for i := range 200 {
			answers := 0
			for range 20 {
				if r.Float64() < 0.3 {
					answers++
				}
			}
			busySecond(b, clk, 20-answers, answers, ttft, 2*time.Second)
			if i >= 40 { // past slow start
				sum, n = sum+b.Limit(), n+1
			}
		}
		// Probes (a quarter of the limit for a window, every 50) dip it.
		if mean := float64(sum) / float64(n); mean < 17 {
			t.Errorf("first tokens of %v: mean limit %.1f of 18 with no congestion, want at least 17 (%+v)", ttft, mean, l.Stats())
		}
	}
}
