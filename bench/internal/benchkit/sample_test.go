package benchkit

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/demo"
)

func TestReadSampleSumsAndMisses(t *testing.T) {
	sim := func(run, wait, done float64) []Metric {
		return []Metric{{Name: "vllm:num_requests_running", Value: run}, {Name: "vllm:num_requests_waiting", Value: wait},
			{Name: "vllm:request_success_total", Value: done}}
	}
	gw := []Metric{{Name: "sluice_queue_waiting", Labels: `{class="interactive"}`, Value: 2}, {Name: "sluice_queue_waiting", Labels: `{class="batch"}`, Value: 1},
		{Name: "sluice_queue_capacity", Value: 32}, {Name: "sluice_queue_in_use", Value: 5}}
	s, ok := ReadSample(1.5, [][]Metric{sim(3, 1, 10), sim(2, 0, 4)}, [][]Metric{gw, gw})
	if !ok {
		t.Fatal("a complete scrape was not a sample")
	}
	if s.T != 1.5 || s.Running != 5 || s.Waiting != 1 || s.Finished != 14 || s.Queue[0] != 4 || s.Queue[1] != 2 {
		t.Errorf("pool figures %+v", s)
	}
	if s.GWQueued != 6 || s.GWCapacity != 64 || s.GWInUse != 10 || !math.IsNaN(s.DelayTarget) {
		t.Errorf("gateway figures %+v", s)
	}
	// A simulator in the llamacpp metrics style writes llama.cpp's gauges.
	llama := []Metric{{Name: "llamacpp:requests_processing", Value: 4}, {Name: "llamacpp:requests_deferred", Value: 3}}
	if s, _ := ReadSample(1, [][]Metric{sim(3, 1, 10), llama}, nil); s.Running != 7 || s.Waiting != 4 || s.Queue[1] != 7 {
		t.Errorf("with a llama.cpp-style simulator: %+v", s)
	}
	// One gateway queues, the other has room: that room is idle free; a
	// gateway reporting unlimited capacity adds none.
	idle := []Metric{{Name: "sluice_queue_capacity", Value: 20}, {Name: "sluice_queue_in_use", Value: 14}, {Name: "sluice_queue_held_slots", Value: 2}}
	unlimited := []Metric{{Name: "sluice_queue_capacity", Value: 1 << 30}}
	s, _ = ReadSample(2, [][]Metric{sim(1, 0, 0)}, [][]Metric{gw, idle, unlimited})
	if s.GWIdleFree != 6 || s.GWHeld != 2 {
		t.Errorf("idle free %v, held %v; want 6, 2", s.GWIdleFree, s.GWHeld)
	}
	if _, ok := ReadSample(2, [][]Metric{sim(1, 0, 0), nil}, nil); ok {
		t.Error("a failed simulator scrape made a sample")
	}
	if _, ok := ReadSample(2, [][]Metric{sim(1, 0, 0)}, [][]Metric{nil}); ok {
		t.Error("a failed gateway scrape made a sample")
	}
}

func TestDelayTargetPrefersInteractive(t *testing.T) {
	ms := []Metric{
		{Name: "sluice_queue_delay_target_seconds", Labels: `{class="batch"}`, Value: 75},
		{Name: "sluice_queue_delay_target_seconds", Labels: `{class="interactive"}`, Value: 0.5},
	}
	if v, ok := DelayTarget(ms); !ok || v != 0.5 {
		t.Errorf("DelayTarget = %v %v, want 0.5", v, ok)
	}
	if _, ok := DelayTarget(ms[:0]); ok {
		t.Error("DelayTarget found in nothing")
	}
	if v, _ := DelayTarget([]Metric{{Name: "sluice_queue_delay_target_seconds", Value: 2}}); v != 2 {
		t.Errorf("unlabelled DelayTarget = %v", v)
	}
}

func TestAggregates(t *testing.T) {
	nan := math.NaN()
	ss := []Sample{
		{T: 1, Running: 4, Finished: 10, Queue: []float64{1, 3}, DelayTarget: nan},
		{T: 2, Running: 8, Finished: 30, GWQueued: 2, Queue: []float64{3, 5}, DelayTarget: 0.5},
		{T: 4, Running: 2, Finished: 30, DelayTarget: 0.25},
	}
	// Time-weighted: 4 for 1 s, 8 for 1 s, 2 for 2 s.
	if m, share := WeightedMean(ss, func(s Sample) float64 { return s.Running }, nil); m != 4 || share != 1 {
		t.Errorf("WeightedMean = %v (share %v), want 4 (1)", m, share)
	}
	if m, share := WeightedMean(ss, func(s Sample) float64 { return s.Running }, func(s Sample) bool { return s.GWQueued > 0 }); m != 8 || share != 0.25 {
		t.Errorf("WeightedMean while queued = %v (share %v), want 8 (0.25)", m, share)
	}
	if m, n := Window(ss, 1, 3); n != 2 || m.Running != 6 || m.Queue[0] != 2 || m.Queue[1] != 4 {
		t.Errorf("Window(1, 3) = %+v over %d", m, n)
	}
	if _, n := Window(ss, 5, 6); n != 0 {
		t.Errorf("Window past the end has %d samples", n)
	}
	if got := PerSecond(ss, func(s Sample) float64 { return s.Running }); len(got) != 5 || got[1] != 4 || got[2] != 8 || got[3] != 8 || got[4] != 2 {
		t.Errorf("PerSecond = %v", got)
	}
	finished := func(s Sample) float64 { return s.Finished }
	for _, c := range []struct{ t, want float64 }{{0.5, 5}, {1, 10}, {1.5, 20}, {3, 30}, {9, 30}} {
		if got := ValueAt(ss, c.t, finished); got != c.want {
			t.Errorf("ValueAt(%v) = %v, want %v", c.t, got, c.want)
		}
	}
	if v, ok := MaxDelayTarget(ss); !ok || v != 0.5 {
		t.Errorf("MaxDelayTarget = %v %v", v, ok)
	}
	if _, ok := MaxDelayTarget(ss[:1]); ok {
		t.Error("MaxDelayTarget found one in NaN")
	}
}

// TestSamplerReadsARig samples real simulators behind a real gateway,
// with the ticks and the clock in the test's hands: a sample taken while
// one stream is running sees it in the pool and in the gateway.
func TestSamplerReadsARig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := SimConfig()
	c.DecodeStepBase = 20 * time.Millisecond // 1000 tokens: 20 s, cancelled long before
	rig, err := StartRig(ctx, 2, c)
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Stop()
	if err := rig.Sluice(ctx, demo.GatewayConfig(rig.Sims)); err != nil {
		t.Fatal(err)
	}
	// One sample of each state: Finish waits for the scrape a tick started.
	sampleOnce := func(start, at time.Time) Sample {
		t.Helper()
		tick, now := make(chan time.Time), start
		smp := StartSampler(ctx, SamplerConfig{Sims: rig.Sims, Gateways: rig.Admins, Tick: tick, Now: func() time.Time { return now }})
		now = at
		tick <- at
		ss := smp.Finish()
		if len(ss) != 1 {
			t.Fatalf("%d samples of one tick", len(ss))
		}
		return ss[0]
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idle := sampleOnce(t0, t0.Add(500*time.Millisecond))

	body := `{"model":"sim-model","stream":true,"max_tokens":1000,"messages":[{"role":"user","content":"hello there"}]}`
	reqCtx, stopReq := context.WithCancel(ctx)
	defer stopReq()
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodPost, rig.Targets[0]+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: ") { // the first token: the stream is decoding
	}
	busy := sampleOnce(t0, t0.Add(1500*time.Millisecond))
	ss := []Sample{idle, busy}

	if ss[0].T != 0.5 || ss[1].T != 1.5 {
		t.Errorf("sample times %v, %v; want 0.5, 1.5 (the injected clock)", ss[0].T, ss[1].T)
	}
	if ss[0].Running != 0 || ss[0].GWInUse != 0 {
		t.Errorf("idle sample %+v", ss[0])
	}
	if ss[1].Running != 1 || ss[1].Queue[0]+ss[1].Queue[1] != 1 || ss[1].GWInUse != 1 || ss[1].GWCapacity <= 0 {
		t.Errorf("sample with one stream %+v", ss[1])
	}
}

// A leg whose every tick's scrape missed still ends with one sample, the
// state when it finished: here no tick comes at all.
func TestSamplerFinishReadsOnceWhenNoTickSampled(t *testing.T) {
	sim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "vllm:num_requests_running 3\nvllm:num_requests_waiting 2\n")
	}))
	defer sim.Close()
	smp := StartSampler(t.Context(), SamplerConfig{Sims: []string{sim.URL}, Tick: make(chan time.Time)})
	ss := smp.Finish()
	if len(ss) != 1 || ss[0].Running != 3 || ss[0].Waiting != 2 {
		t.Fatalf("samples %+v, want one with 3 running and 2 waiting", ss)
	}
}
