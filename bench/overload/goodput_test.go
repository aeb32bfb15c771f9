package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// TestGoodputSmoke runs the goodput scenario with one short leg per path
// and regime and a one-point sweep, and checks the tables and the report.
func TestGoodputSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs simulators and gateways for ~15 s")
	}
	opt := options{
		Traces: []string{writeTrace(t, 2000)}, Backends: 1, Duration: time.Second, GoodputDuration: time.Second,
		GoodputLoads: []float64{2}, Regimes: []string{regimeShed, regimeUnbounded}, Replicas2: true, Runs: 1,
		Sweep: []int{8}, TokenScale: 0.25, MaxInput: 1024, MaxOutput: 256, SLO: 2 * time.Second,
		ClientTimeout: 10 * time.Second, Goodput: true, Sim: simConfig(), Command: "go test",
	}
	var out strings.Builder
	rep, err := run(context.Background(), opt, &out)
	if err != nil {
		t.Fatal(err)
	}
	md := out.String()
	for _, want := range []string{"### Regime shed", "### Regime unbounded", "| direct |", "| sluice x2 |",
		"pool in-time capacity", "### Static limit sweep", "tuned: static max_concurrency 8", "### Targets (issue 10)", "`go test`", "Why (means per run)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	g := rep.Goodput
	if len(g.Legs) != 6 {
		t.Fatalf("got %d legs, want 6", len(g.Legs))
	}
	for _, l := range g.Legs {
		r := l.Runs[0]
		if r.Offered != l.Requests || r.Sent+r.DroppedByGenerator != r.Offered {
			t.Errorf("%s %s: planned %d, offered %d, sent %d", l.Regime, l.Path, l.Requests, r.Offered, r.Sent)
		}
		if r.OK == 0 || r.Samples == 0 {
			t.Errorf("%s %s: ok %d, samples %d", l.Regime, l.Path, r.OK, r.Samples)
		}
		if l.Why == nil || l.Why.PoolTokens <= 0 || l.Why.TokensInSLO+l.Why.TokensLate <= 0 {
			t.Errorf("%s %s: why %+v", l.Regime, l.Path, l.Why)
		}
	}
	if g.Sweep == nil || g.Sweep.Knee != 8 || len(g.Sweep.Trajectory) == 0 {
		t.Errorf("sweep = %+v", g.Sweep)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestPlanFromAnOffset(t *testing.T) {
	opt := options{Traces: []string{writeTrace(t, 2000)}, Backends: 3, TokenScale: 0.25, MaxInput: 1024, MaxOutput: 256, Sim: simConfig()}
	p, err := loadPool(opt, opt.Traces[0], 40)
	if err != nil {
		t.Fatal(err)
	}
	a, _, next, err := p.plan(0, 3, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _, err := p.plan(next, 0.5, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := int(math.Round(3 * p.capRPS * 2)); len(a) != want || next != want {
		t.Errorf("burst: %d requests, next %d, want %d", len(a), next, want)
	}
	if b[0].At != 0 || b[len(b)-1].At >= 4*time.Second || b[len(b)-1].At < 3*time.Second {
		t.Errorf("calm spans %s..%s, want 0..just under 4s", b[0].At, b[len(b)-1].At)
	}
}

func TestSummarizeRunClassifies(t *testing.T) {
	o := options{SLO: time.Second}
	hdr := func(ra, qt string) []string { return []string{ra, "", qt} }
	recs := []bench.Record{
		{Status: 200, TTFT: 500 * time.Millisecond, Done: true},                              // in SLO
		{Status: 200, TTFT: 1500 * time.Millisecond, Done: true},                             // OK, late
		{Status: 429, Kind: bench.KindStatus, E2E: time.Millisecond, Headers: hdr("1", "0")}, // announced, at arrival
		{Status: 503, Kind: bench.KindStatus, E2E: 300 * time.Millisecond, Headers: hdr("2", "290")},
		{Status: 503, Kind: bench.KindStatus, Headers: hdr("", "")}, // blind 503
		{Kind: bench.KindTimeout},
		{Status: 200, Kind: bench.KindRead},
	}
	nan := math.NaN()
	ss := []benchkit.Sample{{T: 0.1, Running: 8, DelayTarget: nan}, {T: 0.2, Running: 16, GWQueued: 3, DelayTarget: nan}}
	out := summarizeRun(o, recs, ss, 16, true)
	if out.OK != 2 || out.InSLO != 1 {
		t.Errorf("ok %d, in SLO %d", out.OK, out.InSLO)
	}
	if out.RefusedWithRA != 2 || out.RefusedNoRA != 1 || out.RefusedAtArrival != 2 || out.RefusedAfterQueue != 1 {
		t.Errorf("refusals %+v", out)
	}
	if out.Unannounced != 3 || out.UnannouncedBy["503 without Retry-After"] != 1 || out.UnannouncedBy["timeout"] != 1 || out.UnannouncedBy["broken stream"] != 1 {
		t.Errorf("unannounced %d %v", out.Unannounced, out.UnannouncedBy)
	}
	if out.RefuseQueuedP99ms != 300 || out.RefuseArrivalP99ms != 1 {
		t.Errorf("refusal p99s %v / %v", out.RefuseArrivalP99ms, out.RefuseQueuedP99ms)
	}
	if math.Abs(out.Util-0.75) > 1e-9 || out.UtilQueued != 1 || math.Abs(out.QueuedShare-0.5) > 1e-9 {
		t.Errorf("util %v, while queued %v (share %v)", out.Util, out.UtilQueued, out.QueuedShare)
	}
	if out.DelayTargetS != nil {
		t.Errorf("delay target %v from samples without it", *out.DelayTargetS)
	}
}

// whyOf counts late answers and their tokens from the records, the pool's
// and the gateways' counters, and the room while a gateway queued.
func TestWhyCounts(t *testing.T) {
	o := options{SLO: time.Second, Backends: 2, Sim: simConfig()}
	o.Sim.Slots = 4
	recs := []bench.Record{
		{Status: 200, TTFT: 500 * time.Millisecond, CompletionTokens: 10},
		{Status: 200, TTFT: 1500 * time.Millisecond, CompletionTokens: 7},
		{Status: 503, Kind: bench.KindStatus},
	}
	nan := math.NaN()
	ss := []benchkit.Sample{
		{T: 1, Running: 8, Queue: []float64{4, 4}, DelayTarget: nan},
		{T: 2, Running: 6, Waiting: 1, GWQueued: 2, GWIdleFree: 3, GWHeld: 1, GWCapacity: 7, GWInUse: 5, Queue: []float64{5, 2}, DelayTarget: nan},
	}
	sim := []benchkit.Metric{{Name: "vllm:generation_tokens_total", Value: 30}, {Name: "sluice_sim_cancelled_total", Value: 1}}
	gw := []benchkit.Metric{{Name: "sluice_queue_rejections_total", Labels: `{model="m",reason="saturated"}`, Value: 4},
		{Name: "sluice_hedges_total", Labels: `{model="m",event="started"}`, Value: 2}}
	w := whyOf(o, recs, ss, [][]benchkit.Metric{sim, sim}, [][]benchkit.Metric{gw, gw})
	if w.AnsweredLate != 1 || w.TokensLate != 7 || w.TokensInSLO != 10 || w.PoolTokens != 60 || w.PoolCancelled != 2 {
		t.Errorf("answers and tokens %+v", w)
	}
	if w.Gateway["refused saturated"] != 8 || w.Gateway["hedges started"] != 4 {
		t.Errorf("gateway counters %v", w.Gateway)
	}
	if w.IdleSlotsQueued != 2 || w.BackendWaitQueued != 1 || w.IdleFreeQueued != 3 || w.HeldQueued != 1 || w.CapacityQueued != 7 {
		t.Errorf("while queued %+v", w)
	}
	// 8 slots - 6 running = (8 - 7 capacity) + (7 - 5 in use) + (5 - 6 - 1 waiting) + 1 waiting.
	if w.IdleSplitQueued != [4]float64{1, 2, -2, 1} {
		t.Errorf("idle split %v", w.IdleSplitQueued)
	}
	if len(w.PeakInFlight) != 2 || w.PeakInFlight[0] != 5 || w.PeakInFlight[1] != 4 || w.SlotsPerBackend != 4 {
		t.Errorf("peaks %v of %d", w.PeakInFlight, w.SlotsPerBackend)
	}
	m := meanWhy([]*Outcome{{Why: w}, {Why: &Why{PeakInFlight: []float64{9, 1}}}})
	if m.AnsweredLate != 0.5 || m.Gateway["refused saturated"] != 4 || m.PeakInFlight[0] != 9 || m.PeakInFlight[1] != 4 {
		t.Errorf("mean %+v", m)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{"3": 3 * time.Second, "0.5": 500 * time.Millisecond,
		now.Add(4 * time.Second).Format(http.TimeFormat): 4 * time.Second} {
		if got, ok := retryAfter(v, now); !ok || got != want {
			t.Errorf("retryAfter(%q) = %s %v, want %s", v, got, ok, want)
		}
	}
	if _, ok := retryAfter("soon", now); ok {
		t.Error("retryAfter(soon) parsed")
	}
}
