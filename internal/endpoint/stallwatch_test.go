package endpoint

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
)

// beat moves clk on by d in steps of w's beat, the watch beating at each,
// as its ticker does while the process runs.
func beat(w *StallWatch, clk *fakeClock, d time.Duration) {
	for end := clk.t.Add(d); clk.t.Before(end); {
		clk.t = clk.t.Add(w.every)
		w.Tick(clk.t)
	}
}

func TestBacklogBoundTakesNoEvidenceFromAStallOfTheProcessItself(t *testing.T) {
	// Two backends, 14 streams sent to each, 8 of them started, when the
	// machine pauses the whole gateway for 400ms: no first token is read
	// from either. That is not a backlog: neither may be held at the 8
	// that had started. A real backlog after the stall (no start for
	// 200ms while the process runs) still holds each at its batch.
	clk := &fakeClock{t: t0}
	w := NewStallWatch(StallBeat)
	w.Tick(clk.t)
	pool := []*Backend{
		mustNew(t, Spec{URL: "http://h:1"}, HealthPolicy{}),
		mustNew(t, Spec{URL: "http://h:2"}, HealthPolicy{}),
	}
	for _, b := range pool {
		b.SetLimiter(admission.Static(24))
		b.SetStallWatch(w)
		b.ObserveLoad(reading(clk, 2, 0, 2), clk.now)
		for range 14 {
			if !b.Acquire() {
				t.Fatal("Acquire refused below the limit")
			}
			b.StartWaitingOf(clk.t, Wait{})
		}
	}
	beat(w, clk, 50*time.Millisecond)
	for _, b := range pool {
		for range 8 {
			b.FirstTokenOf(clk.t, 50*time.Millisecond, Wait{})
		}
	}
	clk.t = clk.t.Add(400 * time.Millisecond) // the process stalls: no beat
	for i, b := range pool {
		if got := b.Limit(); got != 24 {
			t.Fatalf("backend %d: Limit as the process resumes, before its beat = %d, want 24", i, got)
		}
	}
	w.Tick(clk.t) // the late beat
	beat(w, clk, 75*time.Millisecond)
	for i, b := range pool {
		if got := b.Limit(); got != 24 {
			t.Fatalf("backend %d: Limit 75ms after the stall = %d, want 24 (the stall is no backlog)", i, got)
		}
	}
	beat(w, clk, 150*time.Millisecond) // 225ms running without a start
	for i, b := range pool {
		if got := b.Limit(); got != 8 {
			t.Fatalf("backend %d: Limit with 6 streams stalled behind 8 running = %d, want 8", i, got)
		}
	}
}

func TestStallWatchIgnoresJitterButNotAStall(t *testing.T) {
	clk := &fakeClock{t: t0}
	w := NewStallWatch(StallBeat)
	w.Tick(clk.t)
	since := clk.t
	clk.t = clk.t.Add(StallBeat + 40*time.Millisecond) // a late beat within tolerance
	w.Tick(clk.t)
	if got := w.evidenceSince(since, clk.t); !got.Equal(since) {
		t.Fatalf("evidence after a 40ms late beat counts from %v, want %v", got.Sub(t0), 0)
	}
	clk.t = clk.t.Add(300 * time.Millisecond)
	if got := w.evidenceSince(since, clk.t); !got.Equal(clk.t) {
		t.Fatalf("evidence with a beat overdue counts from %v, want now (%v)", got.Sub(t0), clk.t.Sub(t0))
	}
	w.Tick(clk.t)
	resumed := clk.t
	beat(w, clk, 100*time.Millisecond)
	if got := w.evidenceSince(since, clk.t); !got.Equal(resumed) {
		t.Fatalf("evidence after a stall counts from %v, want its end (%v)", got.Sub(t0), resumed.Sub(t0))
	}
	var none *StallWatch
	if got := none.evidenceSince(since, clk.t); !got.Equal(since) {
		t.Fatal("a nil watch moved the evidence's start")
	}
}

func TestStallBeatSlowsOnlyAfterASecondWithNothingInFlight(t *testing.T) {
	idle, beat := 0, time.Duration(0)
	for i := 1; i < idleBeatsBeforeSlow; i++ {
		if idle, beat = nextBeat(idle, false, StallBeat); beat != StallBeat {
			t.Fatalf("after %d idle beats: beat %v, want %v (a short pause keeps it fast)", i, beat, StallBeat)
		}
	}
	if idle, beat = nextBeat(idle, false, StallBeat); beat != StallIdleBeat {
		t.Fatalf("after %d idle beats: beat %v, want %v", idle, beat, StallIdleBeat)
	}
	if idle, beat = nextBeat(idle, false, StallBeat); beat != StallIdleBeat {
		t.Fatalf("still idle: beat %v, want %v", beat, StallIdleBeat)
	}
	if idle, beat = nextBeat(idle, true, StallBeat); beat != StallBeat || idle != 0 {
		t.Fatalf("a request in flight: beat %v (idle count %d), want %v from 0", beat, idle, StallBeat)
	}
}

func TestFirstFastBeatAfterASlowStretchCountsAsAStall(t *testing.T) {
	w := NewStallWatch(StallBeat)
	t0 := time.Unix(1000, 0)
	w.Tick(t0)
	w.Tick(t0.Add(StallIdleBeat)) // the slow beat: evidence from before it does not count
	since := t0.Add(100 * time.Millisecond)
	now := t0.Add(StallIdleBeat + 10*time.Millisecond)
	if got := w.evidenceSince(since, now); !got.Equal(t0.Add(StallIdleBeat)) {
		t.Fatalf("evidence since %v, want from the beat that ended the slow stretch %v", got, t0.Add(StallIdleBeat))
	}
}
