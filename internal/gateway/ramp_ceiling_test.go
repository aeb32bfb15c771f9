package gateway

import (
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/admission"
	loadscrape "github.com/sluice-gw/sluice/internal/scrape"
)

// The cold case on adaptive limits (no max_concurrency): tenant A on two
// long streams, B newly busy beside it with one, then five more at once,
// on a fresh gateway that has proven nothing. The ramp reckoned from the
// pool's recent peak (3) and A's margin held all five, refused 503 at their
// deadline with 3 of the engine's 16 slots in use. The engine reports its
// slots in its metrics (sluice_sim_slots), which the scraper reads: 16,
// less A's margin, is the ceiling B may ramp into, and its five start at
// once within the adaptive limit's start of 8.
//
// Nothing here runs on a timer the machine's load can move (branch
// coldtest): the gateway's clock and the scraper's stand still, so no
// reading goes stale and no queued request meets its deadline; the test
// scrapes once, by hand, after the first three streams' first tokens (the
// engine runs them, nothing waits), and sends B's five only then. A
// scraper on its 200 ms ticker failed 2 of 5 under a CPU hog: a scrape
// landing while one of B's requests waited for the simulator's next step
// took the whole ceiling away (flakes9).
func TestColdNewcomerGrowsIntoReportedSlots(t *testing.T) {
	clk := &frozenClock{now: time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)}
	rig := startRampRig(t, nil, func(d *Deps) { d.Now = clk.Now })
	streams := rig.streams(t)
	// The app's scraper (App.syncScraper), here owned by the test and
	// driven by hand (no Run). Its timeout is a hang guard; its readings
	// never go stale on the frozen clock.
	sc := loadscrape.NewScraper(loadscrape.Config{Interval: time.Second, Timeout: time.Minute,
		CapConcurrency: true, Now: clk.Now}, nil, nil)
	if err := sc.ScrapeOnce(t.Context(), rig.gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}

	for _, key := range []string{"sk-a", "sk-a", "sk-b"} {
		<-streams.open(key)
	}
	if started := streams.started.Load(); started != 3 {
		t.Fatalf("the first three streams: %d started, %d refused", started, streams.refused.Load())
	}
	// Their first tokens came, so the engine runs all three and nothing
	// waits for its next step: the reading this scrape takes is 16 slots,
	// 3 running, all this gateway's.
	if st := rig.sim.Stats(); st.Running != 3 || st.Waiting != 0 {
		t.Fatalf("sim runs %d, %d waiting before the scrape; want 3 and 0", st.Running, st.Waiting)
	}
	if err := sc.ScrapeOnce(t.Context(), rig.gw.Runtime().Backends()); err != nil {
		t.Fatal(err)
	}
	q := rig.gw.Runtime().Queues()["m1"]
	firsts := make([]<-chan struct{}, 5)
	for i := range firsts {
		firsts[i] = streams.open("sk-b")
	}
	// Each of the five is granted or held by the queue (or refused): what
	// the ramp decided, read before anything else can change it. On the
	// frozen clock a held request would wait forever, not until its
	// deadline, so the test reads the decision rather than the outcome.
	deadline := time.Now().Add(time.Minute) // a hang guard
	var st admission.Stats
	for {
		st = q.Stats()
		if int64(st.InUse+st.Queued)+streams.refused.Load() >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's five never reached the queue: in use %d, queued %d, refused %d", st.InUse, st.Queued, streams.refused.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if st.Queued != 0 || streams.refused.Load() != 0 {
		t.Fatalf("in use %d, queued %d, refused %d (ramp held total %d, ceiling %d); want all 8 granted: the engine reports 16 slots, A's margin is 2",
			st.InUse, st.Queued, streams.refused.Load(), st.RampHeldTotal, st.RampCeiling)
	}
	for _, f := range firsts {
		<-f
	}
	streams.end()
	if started, refused := streams.started.Load(), streams.refused.Load(); started != 8 || refused != 0 {
		t.Fatalf("streams started %d, refused %d; want all 8", started, refused)
	}
	if st.RampCeiling != 16 {
		t.Fatalf("ramp ceiling %d; want 16 (the sim's slots, nothing run by others)", st.RampCeiling)
	}
}
