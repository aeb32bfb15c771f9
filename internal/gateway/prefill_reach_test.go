package gateway

import (
	"testing"
)

// A prompt whose own prefill alone is past its objective cannot start
// by it on any engine, however long it waits, so the objective is no
// reason to refuse it: it is judged by the delay target, as before
// branch prefill3 (review37). On a simulator prefilling 2,500 tokens/s
// (its rate learned), with one short stream running and nothing queued
// to prefill, a 6,000-word stream (3 s of prefill, past the 2 s
// objective) was refused 503 at once, and its retry too, for as long as
// anything ran; it goes now.
func TestPromptLongerThanItsObjectiveNotRefusedBesideARunningStream(t *testing.T) {
	rig, p := startWarmPrefillRig(t)
	s := rig.streams(t)
	<-s.open("sk-b")
	if s.started.Load() != 1 {
		t.Fatal("the short stream did not start")
	}
	for i := range 2 { // the first and its retry
		if a := p.send("sk-a", 6000, true); !a.started {
			t.Fatalf("6,000-word stream (try %d) beside one running stream, no prefill queued: %+v; want started", i+1, a)
		}
	}
}
