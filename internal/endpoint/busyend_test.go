package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// A push-back ends when a call started after it is answered with no
// push-back in between; a call started before it, or one overtaken by a
// newer push-back, ends nothing.
func TestAnsweredSinceEndsOnlyAnEarlierPushBack(t *testing.T) {
	b := mustNew(t, Spec{URL: "http://h"}, HealthPolicy{MaxFails: 3, FailTimeout: 10 * time.Second, BusyPenalty: time.Second})
	before := b.BusyEpoch() // a call out before the 429
	b.Observe(t0, outcome.Busy, 0, 24*time.Hour)
	b.AnsweredSince(before)
	if got := b.State(t0.Add(time.Hour)); got != StateBusy {
		t.Fatalf("after an answer to a call sent before the push-back: %v, want busy", got)
	}
	overtaken := b.BusyEpoch() // sent after the first 429, out during the second
	b.Observe(t0, outcome.Busy, 0, time.Hour)
	b.AnsweredSince(overtaken)
	if got := b.State(t0.Add(time.Minute)); got != StateBusy {
		t.Fatalf("after an answer to a call out during a push-back: %v, want busy", got)
	}
	after := b.BusyEpoch()
	b.AnsweredSince(after)
	if got := b.State(t0.Add(time.Minute)); got != StateHealthy {
		t.Fatalf("after an answer to a call sent after the last push-back: %v, want healthy", got)
	}
}
