package admission

import (
	"container/heap"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// batchBackend models a continuous-batching server in virtual time: `slots`
// requests run at once, the rest wait in FIFO order, and a request's service
// time grows with the batch it joins (as a decode step does). Its knee, the
// least concurrency reaching full throughput, is exactly `slots`.
type batchBackend struct {
	slots   int
	base    time.Duration // service time at batch size 0
	perSeq  float64       // relative growth per running request
	running int
	waiting []*vreq
}

type vreq struct {
	sent     time.Duration
	inflight int
	end      time.Duration
}

func (b *batchBackend) service(n int) time.Duration {
	return time.Duration(float64(b.base) * (1 + b.perSeq*float64(n)))
}

// throughput is the backend's best rate in requests per second.
func (b *batchBackend) throughput() float64 { return float64(b.slots) / b.service(b.slots).Seconds() }

type vreqHeap []*vreq

func (h vreqHeap) Len() int           { return len(h) }
func (h vreqHeap) Less(i, j int) bool { return h[i].end < h[j].end }
func (h vreqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *vreqHeap) Push(x any)        { *h = append(*h, x.(*vreq)) }
func (h *vreqHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// closedLoop drives an always-backlogged client gated by lim against b in
// virtual time, calling onWindow with the virtual time and the number of
// completions so far after every window the limit closes, until it returns
// false.
func closedLoop(lim *AdaptiveLimit, b *batchBackend, onWindow func(w uint64, now time.Duration, completed int) bool) {
	closedLoopOn(newFakeClock(), lim, b, onWindow)
}

// closedLoopOn is closedLoop with clk moved along with virtual time.
func closedLoopOn(clk *fakeClock, lim *AdaptiveLimit, b *batchBackend, onWindow func(w uint64, now time.Duration, completed int) bool) {
	epoch := clk.Now()
	var now time.Duration
	var running vreqHeap
	inflight := 0
	start := func(r *vreq) {
		b.running++
		r.end = now + b.service(b.running)
		heap.Push(&running, r)
	}
	fill := func() {
		for inflight < lim.Limit() {
			inflight++
			r := &vreq{sent: now, inflight: inflight}
			if b.running < b.slots {
				start(r)
			} else {
				b.waiting = append(b.waiting, r)
			}
		}
	}
	fill()
	seen := lim.Stats().Windows
	completed := 0
	for running.Len() > 0 {
		r := heap.Pop(&running).(*vreq)
		clk.Advance(r.end - now)
		now = r.end
		completed++
		b.running--
		inflight--
		if len(b.waiting) > 0 && b.running < b.slots {
			next := b.waiting[0]
			b.waiting = b.waiting[1:]
			start(next)
		}
		lim.Observe(epoch.Add(now), now-r.sent, r.inflight, outcome.Success)
		lim.Ended() // as the gateway reports; counted only with ReportsEnds
		if w := lim.Stats().Windows; w != seen {
			seen = w
			if !onWindow(w, now, completed) {
				return
			}
		}
		fill()
	}
}

// trace records the estimate, time and completions at every window.
type trace struct {
	est  []float64
	at   []time.Duration
	done []int
}

func (tr *trace) record(lim *AdaptiveLimit, now time.Duration, completed int) {
	tr.est = append(tr.est, lim.Stats().Estimate)
	tr.at = append(tr.at, now)
	tr.done = append(tr.done, completed)
}

// settledAfter is how many windows after from the estimate took to enter
// [lo, hi] for good (until to).
func (tr *trace) settledAfter(lo, hi float64, from, to int) int {
	last := from - 1
	for i := from; i < to; i++ {
		if tr.est[i] < lo || tr.est[i] > hi {
			last = i
		}
	}
	return last + 1 - from
}

// rate is the completion rate between two windows, per second.
func (tr *trace) rate(from, to int) float64 {
	return float64(tr.done[to]-tr.done[from]) / (tr.at[to] - tr.at[from]).Seconds()
}

// The limit finds the knee from below (slow start, then the gradient), keeps
// the backend at full throughput, and re-converges after the backend loses
// half its slots. Band: [knee, 1.75×knee]. The limit settles where latency is
// Tolerance × baseline; on this backend, whose service time grows 2% per
// running request, that is 1.25× to 1.45× the knee.
func TestAdaptiveLimitConvergesToKnee(t *testing.T) {
	b := &batchBackend{slots: 16, base: 100 * time.Millisecond, perSeq: 0.02}
	lim := NewAdaptiveLimit(LimitConfig{Window: time.Second, Tolerance: 1.5})
	const phase = 150
	tr := &trace{}
	best := map[int]float64{}
	closedLoop(lim, b, func(w uint64, now time.Duration, completed int) bool {
		tr.record(lim, now, completed)
		best[int(w)] = b.throughput()
		if w == phase {
			b.slots = 8 // half the pool is lost
		}
		return w < 2*phase
	})
	for _, p := range []struct {
		name string
		from int
		knee float64
	}{{"16 slots", 0, 16}, {"8 slots", phase, 8}} {
		end := p.from + phase - 1
		n := tr.settledAfter(p.knee, 1.75*p.knee, p.from, end+1)
		got, want := tr.rate(end-50, end), best[end]
		t.Logf("%s: settled in [%.0f, %.0f] after %d windows; final limit %.1f (%.2f× the knee); throughput %.1f/s = %.0f%% of the best %.1f/s",
			p.name, p.knee, 1.75*p.knee, n, tr.est[end], tr.est[end]/p.knee, got, 100*got/want, want)
		if n > 30 {
			t.Errorf("%s: took %d windows to settle within [knee, 1.75×knee]", p.name, n)
		}
		if got < 0.95*want {
			t.Errorf("%s: throughput %.1f/s below 95%% of the backend's best %.1f/s", p.name, got, want)
		}
	}
}

// A backend whose no-load latency really doubles (a slower GPU, longer
// answers) at first looks overloaded and the limit falls; the next probe
// finds the new baseline and the limit returns to the knee.
func TestAdaptiveLimitTracksSlowerBackend(t *testing.T) {
	b := &batchBackend{slots: 16, base: 100 * time.Millisecond, perSeq: 0.02}
	lim := NewAdaptiveLimit(LimitConfig{Window: time.Second, Tolerance: 1.5})
	const change, end = 120, 220 // change away from the periodic probes (every 50)
	tr := &trace{}
	closedLoop(lim, b, func(w uint64, now time.Duration, completed int) bool {
		tr.record(lim, now, completed)
		if w == change {
			b.base *= 2
		}
		return w < end
	})
	n := tr.settledAfter(16, 28, change+1, end)
	low := tr.est[change]
	for _, e := range tr.est[change:] {
		low = min(low, e)
	}
	t.Logf("no-load latency doubled: limit dipped to %.1f, back in [16, 28] after %d windows, final %.1f", low, n, tr.est[end-1])
	if n > 30 {
		t.Errorf("took %d windows to recover; trace %.1f", n, tr.est[change:])
	}
}

// Without probes the no-load baseline expires after BaselineWindows, the
// loaded latency becomes the new baseline and the limit creeps up; probes
// keep it at the knee.
func TestAdaptiveLimitProbesPreventDrift(t *testing.T) {
	run := func(noProbe bool) float64 {
		b := &batchBackend{slots: 16, base: 100 * time.Millisecond, perSeq: 0.02}
		lim := NewAdaptiveLimit(LimitConfig{Window: time.Second, Tolerance: 1.5, BaselineWindows: 40, NoProbe: noProbe})
		closedLoop(lim, b, func(w uint64, _ time.Duration, _ int) bool { return w < 400 })
		return lim.Stats().Estimate
	}
	probed, drifted := run(false), run(true)
	t.Logf("after 400 windows: limit %.1f with probes, %.1f without (knee 16)", probed, drifted)
	if probed > 24 {
		t.Errorf("limit drifted to %.1f despite probes", probed)
	}
	if drifted < 32 {
		t.Errorf("control: without probes the limit should drift past 2× the knee, got %.1f", drifted)
	}
}

func TestAdaptiveLimitBusyNeverRaises(t *testing.T) {
	clk := newFakeClock()
	lim := NewAdaptiveLimit(LimitConfig{Initial: 20, Window: time.Second, MinSamples: 4, NoProbe: true})
	prev := lim.Limit()
	for w := range 50 {
		for i := range 10 {
			clk.Advance(100 * time.Millisecond)
			out := outcome.Success
			if i == 3 && w%2 == 0 || i == 7 {
				out = outcome.Busy
			}
			// Fast successes: on their own they would grow the limit.
			lim.Observe(clk.Now(), 10*time.Millisecond, 20, out)
			if l := lim.Limit(); l > prev {
				t.Fatalf("window %d: limit rose %d -> %d with Busy samples in every window", w, prev, l)
			}
			prev = lim.Limit()
		}
	}
	if prev >= 20 {
		t.Fatalf("limit %d never fell", prev)
	}
}

// One cut per congestion event: Busy answers to requests sent before the
// last cut report congestion that cut already answered.
func TestAdaptiveLimitOneCutPerCongestionEvent(t *testing.T) {
	clk := newFakeClock()
	lim := NewAdaptiveLimit(LimitConfig{Initial: 20, Backoff: 0.5, NoProbe: true})
	for range 10 { // ten 503s for requests all sent 1s ago
		lim.Observe(clk.Now(), time.Second, 20, outcome.Busy)
	}
	if l := lim.Limit(); l != 10 {
		t.Fatalf("limit %d after one burst, want 10 (one halving)", l)
	}
	clk.Advance(2 * time.Second)
	lim.Observe(clk.Now(), time.Second, 10, outcome.Busy) // sent after the cut: new event
	if l := lim.Limit(); l != 5 {
		t.Fatalf("limit %d, want 5", l)
	}
	if lim.Stats().SlowStart {
		t.Fatal("back-pressure must end slow start")
	}
}

func TestAdaptiveLimitIgnoresFailures(t *testing.T) {
	clk := newFakeClock()
	lim := NewAdaptiveLimit(LimitConfig{Initial: 8, MinSamples: 2, NoProbe: true})
	for range 100 {
		clk.Advance(100 * time.Millisecond)
		lim.Observe(clk.Now(), time.Microsecond, 8, outcome.Failure) // a fast refusal is no evidence of speed
	}
	if s := lim.Stats(); s.Limit != 8 || s.Windows != 0 || s.Baseline != 0 {
		t.Fatalf("failures moved the limit: %+v", s)
	}
}

func TestAdaptiveLimitConfigClamps(t *testing.T) {
	lim := NewAdaptiveLimit(LimitConfig{Initial: 500, Min: 10, Max: 5, Tolerance: 0.5, Smoothing: 7, Backoff: 2})
	if l := lim.Limit(); l != 10 {
		t.Fatalf("limit %d, want Max raised to Min = 10", l)
	}
	if c := lim.cfg; c.Tolerance != 1 || c.Smoothing != 1 || c.Backoff != DefaultLimitBackoff {
		t.Fatalf("%+v", c)
	}
}

func TestAdaptiveLimitConcurrentUse(t *testing.T) {
	lim := NewAdaptiveLimit(LimitConfig{Window: time.Millisecond, MinSamples: 1})
	clk := newFakeClock()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				clk.Advance(time.Microsecond * 50)
				_ = lim.Limit()
				lim.Observe(clk.Now(), time.Duration(1+i%5+g)*time.Millisecond, lim.Limit(), outcome.Outcome(i%7/5))
			}
		})
	}
	wg.Wait()
	if l := lim.Limit(); l < 1 || l > DefaultLimitMax {
		t.Fatal(l)
	}
}
