package scalesim

import (
	"math"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/sim"
)

// A saturated server serves what internal/sim documents as its capacity.
func TestSaturatedServerServesSimCapacity(t *testing.T) {
	w := &Workload{Rates: []float64{1, 1, 1, 1, 1, 1}, Window: 10 * time.Minute, Lengths: [][2]int{{512, 128}},
		Compress: 60, Sample: 20.0 / 60, Seed: 7}
	res, err := Run(w, Options{ColdStart: time.Minute, Sync: 15 * time.Second, SLO: time.Second, MaxWait: 5 * time.Second}, Fixed{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	end := w.Duration()
	const from = 10.0 // past the first batch's ramp-up
	done, refused := 0, 0
	for _, r := range res.Requests {
		if r.done > from && r.done <= end {
			done++
		}
		if r.refused {
			refused++
		}
	}
	want, _ := sim.Config{}.Capacity(512, 128) // 7.27 req/s
	if got := float64(done) / (end - from); math.Abs(got-want)/want > 0.03 {
		t.Fatalf("served %.2f req/s saturated, sim.Config.Capacity says %.2f", got, want)
	}
	if refused == 0 {
		t.Fatal("nearly 3x the capacity offered and nothing refused after max wait")
	}
	if got := res.ServerSeconds; math.Abs(got-end) > 1e-6 {
		t.Fatalf("one server for %.0f s cost %.0f server-seconds", end, got)
	}
}

func TestHPAFollowsKubernetesRules(t *testing.T) {
	h := &HPA{Target: 0.5, Tolerance: 0.1, Window: 20 * time.Second}
	if got := h.Desired(View{Now: 0, Provisioned: 4, Serving: 4, Utilisation: 1}); got != 8 {
		t.Fatalf("4 servers at 100%% for a 50%% target: %d, want 8", got)
	}
	if got := h.Desired(View{Now: 1, Provisioned: 8, Serving: 8, Utilisation: 0.54}); got != 8 {
		t.Fatalf("within tolerance: %d, want 8 kept", got)
	}
	// 4 serving at 100% and 4 starting (idle as unready pods): 50% overall.
	if got := h.Desired(View{Now: 2, Provisioned: 8, Serving: 4, Starting: 4, Utilisation: 1}); got != 8 {
		t.Fatalf("starting servers not counted idle on the way up: %d, want 8", got)
	}
	if got := h.Desired(View{Now: 3, Provisioned: 2, Serving: 2, Utilisation: 1}); got != 4 {
		t.Fatalf("%d, want 4", got)
	}
	if got := h.Desired(View{Now: 4, Provisioned: 20, Serving: 20, Utilisation: 1}); got != 40 {
		t.Fatalf("%d, want 40 (100%% per sync)", got)
	}
	if got := h.Desired(View{Now: 5, Provisioned: 1, Serving: 1, Utilisation: 4}); got != 5 {
		t.Fatalf("%d, want 5 (at most +4 from 1)", got)
	}
	// Scale-down waits for the highest recommendation of the window.
	if got := h.Desired(View{Now: 10, Provisioned: 8, Serving: 8, Utilisation: 0.1}); got != 8 {
		t.Fatalf("scale-down within the stabilisation window: %d, want 8", got)
	}
	if got := h.Desired(View{Now: 30, Provisioned: 8, Serving: 8, Utilisation: 0.1}); got != 2 {
		t.Fatalf("after the window: %d, want 2", got)
	}
}

// A pool whose demand quadruples every morning at 10:00: the predictive
// controller (desired backends from the measured arrivals and the forecast)
// asks for the whole need at once; the HPA grows by utilisation, which
// saturates at 100%, and counts its starting servers as idle.
func TestPredictiveCatchesTheRiseFirst(t *testing.T) {
	const perDay = 144
	rate := func(i int) float64 {
		if slot := i % perDay; slot >= 60 && slot < 72 {
			return 4
		}
		return 1
	}
	var warm, replay []float64
	for i := range 7 * perDay {
		warm = append(warm, rate(i))
	}
	for i := 7*perDay + 54; i < 7*perDay+78; i++ { // 09:00 to 13:00
		replay = append(replay, rate(i))
	}
	w := &Workload{Warm: warm, Rates: replay, Window: 10 * time.Minute, Lengths: [][2]int{{512, 128}}, Compress: 60, Seed: 3}
	mu := w.ServiceRate(sim.Config{})
	w.Sample = 8 * mu / (4 * w.Compress) // the rise needs 8 servers
	opt := Options{ColdStart: 3 * time.Minute, Sync: 15 * time.Second, SLO: 2 * time.Second, MaxWait: 10 * time.Second, InitialServers: 3}

	fc, err := forecast.New(forecast.Config{Interval: w.Window})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(0, 0)
	for i, r := range warm {
		fc.Observe(t0.Add(time.Duration(i)*w.Window), forecast.Key{Model: "m"}, r*w.Window.Seconds(), 0)
	}
	at := t0.Add(time.Duration(len(warm)) * w.Window)
	fc.Advance(at)
	pred, err := Run(w, opt, NewPredictive(fc, at, w, scaling.Policy{Headroom: 0.2, PriorSlotRate: mu / 16}, 3*time.Minute, 5*time.Minute, opt.SLO, mu))
	if err != nil {
		t.Fatal(err)
	}
	react, err := Run(w, opt, &HPA{Target: 0.7, Tolerance: 0.1, Window: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ready := func(r *Result) int {
		for m, pt := range r.Timeline {
			if m >= 60 && pt.Serving >= 8 {
				return m
			}
		}
		return len(r.Timeline)
	}
	// 10:00 is the replay's 60th minute.
	if p, r := ready(pred), ready(react); p >= r || p > 70 {
		t.Fatalf("8 servers serving at minute %d (predictive) and %d (reactive); want predictive first, by 10:10", p, r)
	}
	need := func(r float64) float64 { return r * w.Sample * w.Compress / mu }
	ps, rs := Summarise(w, pred, opt.SLO, need), Summarise(w, react, opt.SLO, need)
	if ps.ViolationMinutes >= rs.ViolationMinutes {
		t.Fatalf("SLO-violation minutes: predictive %d, reactive %d", ps.ViolationMinutes, rs.ViolationMinutes)
	}
	again, _ := Run(w, opt, &HPA{Target: 0.7, Tolerance: 0.1, Window: 5 * time.Second})
	if s := Summarise(w, again, opt.SLO, need); s.ViolationMinutes != rs.ViolationMinutes || s.ServerMinutes != rs.ServerMinutes {
		t.Fatalf("two identical runs differ: %+v vs %+v", s, rs)
	}
}

// From a cold meter (a gateway that just started, or a pool back from a
// quiet spell) the first completions are the short requests, and the
// service rate measured from them is several times what a server
// sustains. Under a steady demand of 6 servers, forecast as such, the
// signal must not halve the pool once the scale-in hold is over.
func TestColdMeterDoesNotShrinkABusyPool(t *testing.T) {
	w := &Workload{Rates: []float64{1, 1, 1, 1}, Window: 10 * time.Minute, Lengths: testLengths(), Compress: 60, Seed: 5}
	mu := w.ServiceRate(sim.Config{})
	w.Sample = 6 * mu / w.Compress // the demand needs 6 servers
	opt := Options{ColdStart: 3 * time.Minute, Sync: 15 * time.Second, SLO: 2 * time.Second, MaxWait: 10 * time.Second, InitialServers: 8}
	fc, err := forecast.New(forecast.Config{Interval: w.Window})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(0, 0)
	for range 7 * 144 {
		fc.Observe(at, forecast.Key{Model: "m"}, w.Window.Seconds(), 0)
		at = at.Add(w.Window)
	}
	fc.Advance(at)
	res, err := Run(w, opt, NewPredictive(fc, at, w, scaling.Policy{Headroom: 0.2, PriorSlotRate: mu / 16}, 3*time.Minute, 5*time.Minute, opt.SLO, mu))
	if err != nil {
		t.Fatal(err)
	}
	// The floor is the requests in flight at the speed of a part-full
	// server, which is faster than a full one's: the pool may dip by one
	// below the need before its queue shows, not by half (as it did, to 3
	// servers and 7 violation minutes, when the optimistic rate alone set it).
	for m, pt := range res.Timeline {
		if pt.Serving < 5 {
			t.Fatalf("%d servers serving at minute %d under a demand of 6", pt.Serving, m)
		}
	}
	need := func(r float64) float64 { return r * w.Sample * w.Compress / mu }
	if s := Summarise(w, res, opt.SLO, need); s.ViolationMinutes > 2 {
		t.Fatalf("%d SLO-violation minutes at a steady demand, want at most 2", s.ViolationMinutes)
	}
}

// testLengths is a spread of request lengths like a conversation trace's:
// mostly short, some long (the short ones end first).
func testLengths() [][2]int {
	var out [][2]int
	for i := range 100 {
		p, o := 200+40*i, 30+4*i
		if i%10 == 0 {
			p, o = 6000, 700
		}
		out = append(out, [2]int{p, o})
	}
	return out
}
