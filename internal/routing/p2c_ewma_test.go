package routing

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/outcome"
)

const ms = time.Millisecond

// mkLat builds a backend whose latency estimate at t0 is lat (0 = unseen)
// with inflight requests outstanding.
func mkLat(t testing.TB, name string, lat time.Duration, inflight, weight int) *endpoint.Backend {
	t.Helper()
	b := mk(t, name, weight, 0)
	if lat > 0 {
		b.Observe(t0, outcome.Success, lat, 0)
	}
	acquireN(t, b, inflight)
	return b
}

// TestP2CTwoCandidates: with two candidates both are always drawn, so the
// cheaper one (latency x (inflight+1) / weight) must win every pick; a
// repeated draw would hand the dearer one about a quarter of them.
func TestP2CTwoCandidates(t *testing.T) {
	type be struct {
		lat              time.Duration
		inflight, weight int
	}
	tests := []struct {
		name string
		a, b be
		want string
	}{
		{"lower latency", be{10 * ms, 0, 1}, be{100 * ms, 0, 1}, "a"},
		{"load outweighs latency", be{10 * ms, 9, 1}, be{20 * ms, 0, 1}, "b"}, // 100 vs 20
		{"latency outweighs load", be{10 * ms, 3, 1}, be{50 * ms, 0, 1}, "a"}, // 40 vs 50
		{"unseen counts as 1ms", be{0, 0, 1}, be{5 * ms, 0, 1}, "a"},
		{"weight divides cost", be{30 * ms, 0, 3}, be{20 * ms, 0, 1}, "a"}, // 10 vs 20
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := []*endpoint.Backend{
				mkLat(t, "a", tt.a.lat, tt.a.inflight, tt.a.weight),
				mkLat(t, "b", tt.b.lat, tt.b.inflight, tt.b.weight),
			}
			p := newPicker(t, "p2c_ewma", 5)
			for i := range 200 {
				if got := p.Pick(&Request{}, bs).Name(); got != tt.want {
					t.Fatalf("pick %d: %s, want %s", i, got, tt.want)
				}
			}
		})
	}
}

// scriptedRand returns the given values in order.
type scriptedRand struct {
	t    *testing.T
	vals []int
}

func (s *scriptedRand) IntN(n int) int {
	v := s.vals[0]
	s.vals = s.vals[1:]
	if v < 0 || v >= n {
		s.t.Fatalf("scripted value %d out of [0,%d)", v, n)
	}
	return v
}

// TestP2CDrawsDistinct drives every possible pair of draws: when the first
// draw is the slowest backend the second must be another one, so the
// slowest is never returned. (The slowest is under 4x the fastest: an
// outlier would not be drawn at all.)
func TestP2CDrawsDistinct(t *testing.T) {
	for n := 2; n <= 6; n++ {
		for slow := range n {
			var bs []*endpoint.Backend
			for i := range n {
				lat := time.Duration(10+i) * ms
				if i == slow {
					lat = 35 * ms
				}
				bs = append(bs, mkLat(t, fmt.Sprintf("b%d", i), lat, 0, 1))
			}
			for second := range n - 1 {
				rnd := &scriptedRand{t: t, vals: []int{slow, second}}
				p := &p2cEWMA{rnd: rnd, now: fixedClock(t0)}
				if got := p.Pick(&Request{}, bs); got == bs[slow] {
					t.Errorf("n=%d draws (%d,%d): picked the slowest; the two draws were the same backend", n, slow, second)
				}
			}
		}
	}
}

// TestP2CShares: with costs a < b < c, a wins every pair it is in (2/3),
// b wins only against c (1/3), c never wins. (None is 4x slower than a: an
// outlier is left out of the draws, TestP2COutlierLeavesPeersBalanced.)
func TestP2CShares(t *testing.T) {
	bs := []*endpoint.Backend{mkLat(t, "a", 10*ms, 0, 1), mkLat(t, "b", 20*ms, 0, 1), mkLat(t, "c", 30*ms, 0, 1)}
	p := newPicker(t, "p2c_ewma", 11)
	const picks = 6000
	counts := map[string]int{}
	for range picks {
		counts[Select(t0, p, &Request{}, bs, nil).Name()]++
	}
	if a := float64(counts["a"]) / picks; a < 0.62 || a > 0.72 {
		t.Errorf("fastest share %.3f, want ~2/3", a)
	}
	if b := float64(counts["b"]) / picks; b < 0.28 || b > 0.38 {
		t.Errorf("middle share %.3f, want ~1/3", b)
	}
	if counts["c"] != 0 {
		t.Errorf("slowest picked %d times, want 0", counts["c"])
	}
}

// TestP2CSpreadsLoad: requests held open raise a backend's cost, so the
// fast backend gets most but not all of the load, in latency order (none
// of them 4x slower than the fastest: TestP2COutlierOnlyWhenPeersFull).
func TestP2CSpreadsLoad(t *testing.T) {
	bs := []*endpoint.Backend{mkLat(t, "a", 10*ms, 0, 1), mkLat(t, "b", 20*ms, 0, 1), mkLat(t, "c", 30*ms, 0, 1)}
	p := newPicker(t, "p2c_ewma", 13)
	for range 700 {
		Select(t0, p, &Request{}, bs, nil).Acquire()
	}
	a, b, c := bs[0].Inflight(), bs[1].Inflight(), bs[2].Inflight()
	if !(a > b && b > c && c > 0) {
		t.Errorf("inflight a=%d b=%d c=%d; want a > b > c > 0", a, b, c)
	}
	// Costs converge: lat x (inflight+1) should end within ~2x of each other.
	ca, cc := 10*(a+1), 30*(c+1)
	if ca > 2*cc || cc > 2*ca {
		t.Errorf("costs a=%d c=%d did not converge", ca, cc)
	}
}

// TestP2COutstandingWork: when the request's size is known, p2c weighs the
// tokens outstanding on each candidate, not how many requests they are. One
// 30k-token prompt keeps a backend busier than three short chats; a count
// would send the next request to the backend with the long prompt.
func TestP2COutstandingWork(t *testing.T) {
	long := mkLat(t, "long", 50*ms, 1, 1)
	long.AddWork(30000)
	short := mkLat(t, "short", 50*ms, 3, 1)
	short.AddWork(3 * 500)
	bs := []*endpoint.Backend{long, short}
	p := newPicker(t, "p2c_ewma", 5)
	for i := range 100 {
		if got := p.Pick(&Request{Work: 500}, bs).Name(); got != "short" {
			t.Fatalf("pick %d with work known: %s, want short (1500+500 tokens vs 30000+500)", i, got)
		}
	}
	// Without a size, counts decide as before: 1+1 requests vs 3+1.
	if got := p.Pick(&Request{}, bs).Name(); got != "long" {
		t.Fatalf("pick with work unknown: %s, want long (fewer requests)", got)
	}
}

// TestP2CAvoidsStalledBackend: a backend whose estimate is still fast from
// before, but whose waiting request has had no first token for 300ms, is
// at least that slow now; p2c must prefer the peer that keeps answering.
func TestP2CAvoidsStalledBackend(t *testing.T) {
	fast := mkLat(t, "fast", 20*ms, 0, 1)
	turned := mkLat(t, "turned", 10*ms, 0, 1) // faster estimate, from before it turned slow
	turned.StartWaitingOf(t0, endpoint.Wait{})
	p := &p2cEWMA{rnd: NewRand(1), now: func() time.Time { return t0.Add(300 * ms) }}
	for range 20 {
		if got := p.Pick(nil, []*endpoint.Backend{turned, fast}); got != fast {
			t.Fatalf("picked %s, want fast: a request waiting 300ms outweighs a 10ms estimate", got.Name())
		}
	}
	// Once its first token comes the stall ends; the token's own latency
	// (300ms) is what the estimate keeps.
	turned.FirstTokenOf(t0.Add(300*ms), 300*ms, endpoint.Wait{})
	if s := turned.Stalled(t0.Add(400 * ms)); s != 0 {
		t.Fatalf("Stalled after the first token = %v, want 0", s)
	}
	if l := turned.Latency(t0.Add(300 * ms)); l < 300*ms {
		t.Fatalf("Latency after a 300ms first token = %v, want >= 300ms", l)
	}
}

// TestP2COutlierOnlyWhenPeersFull: a backend four times slower than the
// fastest candidate (in its peak EWMA and its recent samples) loses
// every draw against a non-outlier, however much more work that one has;
// it serves only once its peers are at their limits. Its peak EWMA decays
// while it gets nothing, so it is tried again later (one spike alone, in
// the peak EWMA only, does not make an outlier).
func TestP2COutlierOnlyWhenPeersFull(t *testing.T) {
	slow := mkLat(t, "slow", 400*ms, 0, 1)
	a := mk(t, "a", 1, 20)
	b := mk(t, "b", 1, 20)
	for _, h := range []*endpoint.Backend{a, b} {
		h.Observe(t0, outcome.Success, 40*ms, 0)
	}
	bs := []*endpoint.Backend{slow, a, b}
	p := newPicker(t, "p2c_ewma", 7)
	for i := range 40 {
		got := Select(t0, p, &Request{}, bs, nil)
		if got == slow {
			t.Fatalf("pick %d went to the outlier with a (%d) and b (%d) in flight under their limit of 20", i, a.Inflight(), b.Inflight())
		}
		got.Acquire()
	}
	if got := Select(t0, p, &Request{}, bs, nil); got != slow {
		t.Fatalf("peers full: picked %v, want the outlier", got.Name())
	}

	// A spike: one peer's peak EWMA jumps to 10x on one slow answer; the
	// median of its last samples does not. It is no outlier: cost
	// decides, as before.
	c := mkLat(t, "c", 40*ms, 0, 1)
	d := mkLat(t, "d", 40*ms, 3, 1)
	c.Observe(t0, outcome.Success, 400*ms, 0)
	if !(c.Latency(t0) >= 400*ms && c.RecentLatency() == 40*ms) {
		t.Fatalf("setup: c latency %v recent %v", c.Latency(t0), c.RecentLatency())
	}
	if got := p.Pick(&Request{}, []*endpoint.Backend{c, d}); got != d {
		t.Fatalf("picked %s: a spike made c costlier (400ms x 1 vs 40ms x 4), want d", got.Name())
	}

	// Without samples, the outlier's peak EWMA decays below 4x its
	// peers' (which keep answering in 40ms) within a few time constants:
	// it is tried again.
	later := t0.Add(30 * time.Second)
	a.Observe(later, outcome.Success, 40*ms, 0)
	b.Observe(later, outcome.Success, 40*ms, 0)
	if !outlier(slow, t0.Add(time.Second), 40*ms) || outlier(slow, later, fastest(bs, later)) {
		t.Fatalf("slow: latency %v after 1s, %v after 30s (recent %v); want an outlier at 1s only",
			slow.Latency(t0.Add(time.Second)), slow.Latency(later), slow.RecentLatency())
	}
}

// TestP2COutlierLeavesPeersBalanced: with one latency outlier among three
// backends, every pick is a p2c draw between the two others, so their
// loads stay within one request of each other. Before, a draw that paired
// the outlier with one of them handed it the request whatever its load:
// two picks in three went to a random peer, and one of the pair carrying
// the whole load ran past its engine's slots (chaos backend-slow).
func TestP2COutlierLeavesPeersBalanced(t *testing.T) {
	slow := mkLat(t, "slow", 400*ms, 0, 1)
	a := mk(t, "a", 1, 40)
	b := mk(t, "b", 1, 40)
	for _, h := range []*endpoint.Backend{a, b} {
		h.Observe(t0, outcome.Success, 40*ms, 0)
	}
	bs := []*endpoint.Backend{slow, a, b}
	p := newPicker(t, "p2c_ewma", 3)
	for i := range 30 {
		got := Select(t0, p, &Request{}, bs, nil)
		if got == slow {
			t.Fatalf("pick %d went to the outlier", i)
		}
		got.Acquire()
		if d := a.Inflight() - b.Inflight(); d > 1 || d < -1 {
			t.Fatalf("after %d picks a has %d in flight and b %d; want them within one of each other", i+1, a.Inflight(), b.Inflight())
		}
	}
	// Two outliers and one peer: the peer takes every pick while it has
	// room; among outliers alone, cost decides.
	slow2 := mkLat(t, "slow2", 300*ms, 0, 1)
	if got := p.Pick(&Request{}, []*endpoint.Backend{slow, slow2, a}); got != a {
		t.Fatalf("picked %s, want the only non-outlier", got.Name())
	}
	if got := p.Pick(&Request{}, []*endpoint.Backend{slow, slow2}); got != slow2 {
		t.Fatalf("picked %s among outliers alone, want the cheaper (300ms)", got.Name())
	}
}

// TestRecentLatencyIsMedianOfLastThree: one slow answer among the last
// three does not move it, two do, and the oldest sample drops out.
func TestRecentLatencyIsMedianOfLastThree(t *testing.T) {
	b := mk(t, "b", 1, 0)
	steps := []struct{ sample, want time.Duration }{
		{40 * ms, 40 * ms}, {400 * ms, 40 * ms}, {40 * ms, 40 * ms}, {40 * ms, 40 * ms},
		{400 * ms, 40 * ms}, {400 * ms, 400 * ms}, {40 * ms, 400 * ms}, {40 * ms, 40 * ms},
	}
	for i, s := range steps {
		b.Observe(t0, outcome.Success, s.sample, 0)
		if got := b.RecentLatency(); got != s.want {
			t.Fatalf("after sample %d (%v): RecentLatency %v, want %v", i, s.sample, got, s.want)
		}
	}
}
