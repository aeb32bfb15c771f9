package admission

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Long streams (60 s) held at the ceiling: a probe drops the limit to a
// quarter, and in-flight streams cannot fall that far before it gives up.
// Before, every probe did so anyway, and for its 5-9 s nothing could start
// (the old code: 7 probes in 400 s, 38 s below 192 in all). Now a probe
// that cannot measure is skipped and the limit stays at the ceiling.
func TestAdaptiveLimitSkipsProbesLongStreamsCannotServe(t *testing.T) {
	{
		clk := newFakeClock()
		lim := NewAdaptiveLimit(LimitConfig{LatencyFloor: 200 * time.Millisecond, Max: 256,
			ReportsEnds: true, Clock: clk.Now})
		perSec := streamLoad(lim, clk, kneeAt256, 60*time.Second, 400*time.Second)
		low, below := perSec[60], 0
		for _, l := range perSec[60:] {
			low = min(low, l)
			if l < 192 {
				below++
			}
		}
		st := lim.Stats()
		t.Logf("from 60 to 400 s the limit fell to %d, %d s below 192; probes run %d, missed %d",
			low, below, st.Probes, st.ProbesMissed)
		if below > 0 || st.ProbesMissed == 0 {
			t.Errorf("the limit fell to %d (%d s below 192) with long streams; %d probes missed", low, below, st.ProbesMissed)
		}
	}
}

// Short requests end many times a window, so in-flight falls to a probe's
// limit within it: with the end rate known (ReportsEnds, Clock) probes run
// as before, and still keep the limit from drifting once the baseline's
// history expires (TestAdaptiveLimitProbesPreventDrift), and find the new
// no-load latency of a backend that became slower
// (TestAdaptiveLimitTracksSlowerBackend).
func TestAdaptiveLimitProbesStillRunForShortRequests(t *testing.T) {
	clk := newFakeClock()
	b := &batchBackend{slots: 16, base: 100 * time.Millisecond, perSeq: 0.02}
	lim := NewAdaptiveLimit(LimitConfig{Window: time.Second, Tolerance: 1.5, BaselineWindows: 40,
		ReportsEnds: true, Clock: clk.Now})
	closedLoopOn(clk, lim, b, func(w uint64, _ time.Duration, _ int) bool { return w < 400 })
	st := lim.Stats()
	t.Logf("after 400 windows: limit %.1f (knee 16), probes run %d, missed %d", st.Estimate, st.Probes, st.ProbesMissed)
	if st.Estimate > 24 {
		t.Errorf("limit drifted to %.1f", st.Estimate)
	}
	if st.Probes < 15 || st.ProbesMissed > st.Probes/4 {
		t.Errorf("probes run %d, missed %d: short requests should let nearly every probe measure", st.Probes, st.ProbesMissed)
	}

	clk = newFakeClock()
	b = &batchBackend{slots: 16, base: 100 * time.Millisecond, perSeq: 0.02}
	lim = NewAdaptiveLimit(LimitConfig{Window: time.Second, Tolerance: 1.5, ReportsEnds: true, Clock: clk.Now})
	const change, end = 120, 220
	tr := &trace{}
	closedLoopOn(clk, lim, b, func(w uint64, now time.Duration, completed int) bool {
		tr.record(lim, now, completed)
		if w == change {
			b.base *= 2
		}
		return w < end
	})
	n := tr.settledAfter(16, 28, change+1, end)
	t.Logf("no-load latency doubled: back in [16, 28] after %d windows, final %.1f", n, tr.est[end-1])
	if n > 30 {
		t.Errorf("took %d windows to recover; trace %.1f", n, tr.est[change:])
	}
}

// A probe that started on a burst of ends (short requests ending next to
// long streams, which then hold in flight above the probe's limit) gives up
// once a Window with no end shows it cannot measure, instead of holding the
// limit at a quarter for 4 windows + 4 latencies (4.4 s here, the old code).
func TestAdaptiveLimitProbeThatCannotMeasureEndsEarly(t *testing.T) {
	clk := newFakeClock()
	lim := NewAdaptiveLimit(LimitConfig{Initial: 100, Max: 100, Window: time.Second, BaselineWindows: 4,
		ReportsEnds: true, Clock: clk.Now})
	// Two windows of 30 ends and 10 samples a second at 100 in flight (the
	// clients refill what ends): the probe is due after the second, and at
	// 30 ends a second the 75 above its limit of 25 could end in time.
	for lim.Stats().Windows < 2 {
		for range 10 {
			for range 3 {
				lim.Ended()
			}
			clk.Advance(100 * time.Millisecond)
			lim.Observe(clk.Now(), 100*time.Millisecond, 100, outcome.Success)
		}
	}
	if st := lim.Stats(); !st.Probing || lim.Limit() != 25 {
		t.Fatalf("want a probe at 25 after two windows, got limit %d, %+v", lim.Limit(), st)
	}
	// Then nothing ends: the 100 in flight are long streams.
	start := clk.Now()
	for lim.Limit() == 25 && clk.Now().Sub(start) < 10*time.Second {
		clk.Advance(250 * time.Millisecond) // the queue's kick reads the limit
	}
	held := clk.Now().Sub(start)
	st := lim.Stats()
	t.Logf("probe held the limit at 25 for %v; %+v", held, st)
	if held > 2500*time.Millisecond || st.ProbesMissed != 1 {
		t.Errorf("a probe that cannot measure held the limit at a quarter for %v (want at most 2.5 s: a Window to see no end, one to confirm); %d missed", held, st.ProbesMissed)
	}
}
