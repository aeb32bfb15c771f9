package admission

import (
	"container/heap"
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// streamEvent is a long stream's first token or end, in virtual time.
type streamEvent struct {
	at    time.Duration
	first bool
	lat   time.Duration // time to first token, for first
}

type streamEvents []streamEvent

func (h streamEvents) Len() int           { return len(h) }
func (h streamEvents) Less(i, j int) bool { return h[i].at < h[j].at }
func (h streamEvents) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *streamEvents) Push(x any)        { *h = append(*h, x.(streamEvent)) }
func (h *streamEvents) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// streamLoad drives clients that always want more streams than the limit
// lets start, against a backend in virtual time, as the gateway feeds the
// limit: a stream's time to first token when it comes (Observe, with the
// streams open then), its end with Ended, and the limit read on every
// change and every 250 ms (the queue's kick while requests wait). A stream
// starts the moment the limit allows; its first token comes ttft(open)
// later (open: the streams open once it started), and it ends dur after
// its start. Returns the limit at every whole second up to total.
func streamLoad(lim *AdaptiveLimit, clk *fakeClock, ttft func(open int) time.Duration, dur, total time.Duration) []int {
	const kick = 250 * time.Millisecond
	epoch := clk.Now()
	var (
		now    time.Duration
		events streamEvents
		open   int
		perSec []int
	)
	fill := func() {
		for open < lim.Limit() {
			open++
			lat := ttft(open)
			heap.Push(&events, streamEvent{at: now + lat, first: true, lat: lat})
			heap.Push(&events, streamEvent{at: now + dur})
		}
	}
	nextKick := time.Duration(0)
	for now <= total {
		at := nextKick
		if events.Len() > 0 && events[0].at < at {
			at = events[0].at
		}
		for now < at && time.Duration(len(perSec))*time.Second <= at && len(perSec) <= int(total/time.Second) {
			perSec = append(perSec, lim.Limit()) // the limit as it stood at each whole second
			if time.Duration(len(perSec))*time.Second > at {
				break
			}
		}
		clk.Advance(at - now)
		now = at
		if at == nextKick {
			nextKick += kick
		} else {
			e := heap.Pop(&events).(streamEvent)
			if e.first {
				lim.Observe(epoch.Add(now), e.lat, open, outcome.Success)
			} else {
				open--
				lim.Ended()
			}
		}
		fill()
	}
	return perSec
}

// kneeAt256 is a backend's time to first token that stays at 500 ms up to
// 256 streams and grows by its base per 64 streams beyond (they queue for
// batch slots).
func kneeAt256(open int) time.Duration {
	return time.Duration(float64(500*time.Millisecond) * (1 + math.Max(0, float64(open-256))/64))
}

// Long streams (60 s each) and clients always waiting: the limit must grow
// at a pace set by first tokens, not by streams ending. Before, a window
// waited for MinSamples (in slow start, est) first tokens that could come
// only once streams ended: the limit sat at 6 for the whole first minute
// (the control case, which is the old code path: no ends reported, no
// clock). Now it reaches 200 within 30 simulated seconds, stops near the
// knee (latency within tolerance), and stays there.
func TestAdaptiveLimitGrowsWithLongStreams(t *testing.T) {
	for _, c := range []struct {
		name  string
		fixed bool
	}{{"old windows", false}, {"starts-bounded windows", true}} {
		clk := newFakeClock()
		cfg := LimitConfig{LatencyFloor: 200 * time.Millisecond}
		if c.fixed {
			cfg.ReportsEnds, cfg.Clock = true, clk.Now
		}
		lim := NewAdaptiveLimit(cfg)
		perSec := streamLoad(lim, clk, kneeAt256, 60*time.Second, 180*time.Second)
		reached := -1
		for s, l := range perSec {
			if l >= 200 {
				reached = s
				break
			}
		}
		t.Logf("%s: limit at 5, 10, 20, 30, 59, 120, 180 s: %d %d %d %d %d %d %d; >= 200 after %d s; %+v",
			c.name, perSec[5], perSec[10], perSec[20], perSec[30], perSec[59], perSec[120], perSec[180], reached, lim.Stats())
		if !c.fixed {
			if perSec[59] > 16 {
				t.Errorf("control: the old windows should starve the limit for the streams' first minute, got %d at 59 s", perSec[59])
			}
			continue
		}
		if reached < 0 || reached > 30 {
			t.Errorf("limit reached 200 after %d s (want within 30 s; -1: never)", reached)
		}
		// Past the knee latency grows; the tolerance (1.5) and the gradient
		// hold the limit within a 1.5x latency, 288 streams, and a little
		// overshoot from slow start's last step.
		for s := 60; s < len(perSec); s++ {
			if perSec[s] > 400 {
				t.Fatalf("limit %d at %d s, far past the knee of 256", perSec[s], s)
			}
		}
	}
}

// Short requests end many times a window, so a window bounded by the starts
// it allowed still needs MinSamples: the limit's trajectory against a
// batching backend (100 ms and 500 ms requests, knee 16, then 8) is the
// same with ReportsEnds and Clock as without, window for window. (With 2 s
// requests, 8 samples a second, windows close a little sooner: the
// trajectory differs by up to 10% for a few windows after the loss of
// half the slots, and ends the same.)
func TestAdaptiveLimitShortRequestsUnchanged(t *testing.T) {
	for _, base := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond} {
		shortRequestsUnchanged(t, base)
	}
}

func shortRequestsUnchanged(t *testing.T, base time.Duration) {
	run := func(fixed bool) *trace {
		clk := newFakeClock()
		cfg := LimitConfig{Window: time.Second, Tolerance: 1.5}
		if fixed {
			cfg.ReportsEnds, cfg.Clock = true, clk.Now
		}
		lim := NewAdaptiveLimit(cfg)
		b := &batchBackend{slots: 16, base: base, perSeq: 0.02}
		tr := &trace{}
		closedLoopOn(clk, lim, b, func(w uint64, now time.Duration, completed int) bool {
			tr.record(lim, now, completed)
			if w == 150 {
				b.slots = 8
			}
			return w < 300
		})
		return tr
	}
	old, fixed := run(false), run(true)
	worst, at := 0.0, 0
	for i := range min(len(old.est), len(fixed.est)) {
		if d := math.Abs(fixed.est[i]-old.est[i]) / old.est[i]; d > worst {
			worst, at = d, i
		}
	}
	t.Logf("%v requests: windows %d vs %d; largest difference %.1f%% at window %d (%.1f vs %.1f); final %.1f vs %.1f",
		base, len(old.est), len(fixed.est), 100*worst, at, old.est[at], fixed.est[at], old.est[len(old.est)-1], fixed.est[len(fixed.est)-1])
	if len(old.est) != len(fixed.est) || worst > 0.05 {
		t.Errorf("%v requests: trajectory changed: %.1f%% at window %d", base, 100*worst, at)
	}
	if d := old.at[len(old.at)-1] - fixed.at[len(fixed.at)-1]; d < -time.Second || d > time.Second {
		t.Errorf("%v requests: 300 windows took %v before, %v now", base, old.at[len(old.at)-1], fixed.at[len(fixed.at)-1])
	}
}
