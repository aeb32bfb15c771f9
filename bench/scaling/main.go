// Command scaling shows Sluice's scaling signal on a replayed real trace:
// the Azure conversation trace (its order, token counts and burstiness)
// under a load envelope — calm, a ramp past the pool's capacity, a peak,
// then a drop — through one Sluice with its defaults in front of simulated
// backends. It polls the admin listener's /scaling (what KEDA's metrics-api
// scaler reads) every second and prints the timeline: demand, the measured
// per-backend service rate, the queue, desired backends and refusals; then
// when the signal first asked for more backends than the pool has, when
// the first request was refused, and when the signal fell back after the
// drop. Targets (issue 13): the signal rises at least 5 s before the first
// refusal, and falls back below the pool's size once demand drops. With a
// forecast (the default) the signal a scaler reads is held at its highest
// for scaling.scale_in_hold (5m) before it may fall (issue 14: scale-in is
// slow by design), so the rise and the fall are judged on the need now
// (the signal's terms: demand, headroom, burst, queue) and the held signal is
// checked to fall when, and only when, the hold allows; --tail 5m30s keeps
// polling long enough to see it.
//
//	go run ./bench/scaling
//	go run ./bench/scaling --max-concurrency 16   # the engines' batch size as a static limit
//	go run ./bench/scaling --forecast=false       # the signal without the forecast's lead and hold
//	go run ./bench/scaling --tail 5m30s           # poll until the scale-in hold has ended
//	go run ./bench/scaling --until 30s            # the start-up alone: the full run's arrivals before the first ramp
//	go run ./bench/scaling --envelope 30s:0.5,30s:0.5>1.6,20s:1.6,30s:0.3 --out scaling.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/demo"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/sim"
)

const (
	azureTrace = "/work/shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv"
	model      = "sim-model" // demo.GatewayConfig's
	minLead    = 5 * time.Second
)

type options struct {
	Trace      string
	Backends   int
	Envelope   []phase
	TokenScale float64
	MaxInput   int
	MaxOutput  int
	From       int // first trace request replayed
	Window     time.Duration
	MaxConc    int
	Poll       time.Duration
	Tail       time.Duration // polling past the last arrival
	Forecast   bool
	Headroom   float64       // scaling.headroom (0: Sluice's default)
	Delay      time.Duration // admission.delay_target (0: Sluice's default, a quarter of max_wait)
	Scrape     bool          // load_metrics.enabled: each backend capped at its learned batch (issue 10 §3)
	SLO        time.Duration
	Command    string
	// Until replays only the arrivals planned before it (0: all), warped
	// under the whole envelope, so a run's first Until is the full run's.
	Until time.Duration
}

// Poll is one reading of /scaling, T seconds after the replay started.
type Poll struct {
	T      float64        `json:"t_s"`
	Signal scaling.Signal `json:"signal"`
}

// Report is the run's result (--json).
type Report struct {
	Command      string           `json:"command"`
	Machine      benchkit.Machine `json:"machine"`
	Trace        string           `json:"trace"`
	Requests     int              `json:"requests"`
	Backends     int              `json:"backends"`
	PerServerRPS float64          `json:"per_server_rps"` // the simulator's capacity for the trace's mean request
	Window       float64          `json:"window_s"`
	// ScaleInHold is scaling.scale_in_hold when the gateway applies it
	// (forecast.enabled), else 0.
	ScaleInHold float64 `json:"scale_in_hold_s"`
	Forecast    bool    `json:"forecast"`
	// HeldBelowNeed counts polls whose signal was below its own need now
	// (the hold must never take the signal under what demand and queue need).
	HeldBelowNeed int                `json:"held_below_need"`
	Polls         []Poll             `json:"polls"`
	Peaks         []Peak             `json:"peaks"`
	FinalDesired  float64            `json:"final_desired"`
	Refusals      int                `json:"refusals"`
	RefusalReason map[string]float64 `json:"refusals_by_status"`
	Startup       Startup            `json:"startup"`
	Bench         *bench.Result      `json:"bench"`
}

func main() {
	var o options
	var env, out, jsonOut string
	flag.StringVar(&o.Trace, "trace", azureTrace, "trace to replay (any format bench.LoadTrace reads)")
	flag.IntVar(&o.Backends, "backends", 2, "simulated backends in the pool")
	flag.StringVar(&env, "envelope", "30s:0.5,60s:0.5>1.5,10s:1.5,20s:0.3,60s:0.3>1.5,10s:1.5,20s:0.3", "load envelope, multiples of the pool's capacity: DURATION:LOAD or DURATION:FROM>TO (a ramp), comma-separated")
	flag.Float64Var(&o.TokenScale, "token-scale", 0.25, "multiply the trace's token counts (after clamping) so the simulators run fast")
	flag.IntVar(&o.MaxInput, "max-input", 1024, "clamp the trace's prompt tokens (before --token-scale)")
	flag.IntVar(&o.MaxOutput, "max-output", 256, "clamp the trace's output tokens (before --token-scale)")
	flag.IntVar(&o.From, "from", 0, "first trace request replayed")
	flag.DurationVar(&o.Window, "window", 0, "scaling.window (0: Sluice's default)")
	flag.IntVar(&o.MaxConc, "max-concurrency", 0, "static per-backend max_concurrency (0: Sluice's default, the adaptive limit)")
	flag.DurationVar(&o.Poll, "poll", time.Second, "how often /scaling is read")
	flag.BoolVar(&o.Forecast, "forecast", config.Default().Forecast.Enabled, "forecast.enabled (default: Sluice's default); false: the signal without a forecast lead or scale-in hold")
	flag.BoolVar(&o.Scrape, "load-metrics", config.Default().LoadMetrics.Enabled, "load_metrics.enabled (default: Sluice's default); false: no scraped cap, the adaptive limits alone (as when §11's first runs were measured)")
	flag.Float64Var(&o.Headroom, "headroom", 0, "scaling.headroom (0: Sluice's default, 0.2)")
	flag.DurationVar(&o.Delay, "delay-target", 0, "admission.delay_target (0: Sluice's default, a quarter of max_wait: 500ms); 2s: arrivals refused only past max_wait, as when §11's first runs were measured")
	flag.DurationVar(&o.Until, "until", 0, "replay only the arrivals planned before this (0: all), warped as in the full run: --until 40s repeats the start-up alone")
	flag.DurationVar(&o.Tail, "tail", 0, "keep polling this long after the last request (0: three polls); longer than scaling.scale_in_hold to see the held signal fall")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()
	var err error
	if o.Envelope, err = parseEnvelope(env); err != nil {
		benchkit.Fatal("scaling", err)
	}
	if o.Backends < 1 || !(o.TokenScale > 0) || o.Poll <= 0 {
		benchkit.Fatal("scaling", fmt.Errorf("--backends >= 1, --token-scale > 0 and --poll > 0"))
	}
	o.SLO = config.Default().Admission.MaxWait.D()
	o.Command = benchkit.CommandLine("./bench/scaling", os.Args[1:])
	benchkit.Main("scaling", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, o, md)
	})
}

// run replays the warped trace through one Sluice in front of the
// simulators while polling its /scaling, then judges each peak and writes
// the report.
func run(ctx context.Context, o options, md *strings.Builder) (*Report, error) {
	started := time.Now()
	rep := &Report{Command: o.Command, Machine: benchkit.ReadMachine(), Trace: o.Trace, Backends: o.Backends}
	simCfg := benchkit.SimConfig()
	arr, capRPS, err := arrivals(o, simCfg, rep)
	if err != nil {
		return nil, err
	}
	rep.Requests = len(arr)

	rig, err := benchkit.StartRig(ctx, o.Backends, simCfg)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	if err := rig.Sluice(ctx, gatewayConfig(o, rig.Sims, rep)); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "scaling: %d requests over %s, pool capacity %.1f req/s (load avg %s)\n", len(arr), span(o.Envelope), capRPS, benchkit.Loadavg())

	res, err := replayPolling(ctx, o, rig, arr, rep)
	if err != nil {
		return nil, err
	}
	rep.Bench = res
	summarize(rep, o, res)
	summarizeStartup(&rep.Startup, res, rep.Polls)
	rep.Machine.LoadAfter = benchkit.Loadavg()
	write(md, rep, o, capRPS, started)
	return rep, nil
}

// arrivals loads the trace and warps as many of its requests as the
// envelope needs at the pool's capacity onto the envelope. It returns them
// and that capacity, and sets the per-server capacity in rep.
func arrivals(o options, simCfg sim.Config, rep *Report) ([]bench.Arrival, float64, error) {
	tr, err := benchkit.LoadTrace(o.Trace, o.TokenScale, o.MaxInput, o.MaxOutput)
	if err != nil {
		return nil, 0, err
	}
	// Capacity for the trace's mean request, over the requests replayed:
	// which requests those are depends on the capacity, so iterate.
	n := len(tr) - o.From
	var capRPS float64
	for range 4 {
		p, q := benchkit.MeanTokens(tr[o.From : o.From+min(n, len(tr)-o.From)])
		rep.PerServerRPS = benchkit.Capacity(simCfg, p, q)
		capRPS = rep.PerServerRPS * float64(o.Backends)
		n = max(int(cumulative(o.Envelope, span(o.Envelope))*capRPS+0.5), 2)
	}
	slice, sliceSpan, err := benchkit.Slice(tr, o.From, n)
	if err != nil {
		return nil, 0, err
	}
	arr := warp(slice, sliceSpan, o.Envelope)
	if o.Until > 0 {
		arr = until(arr, o.Until)
	}
	return arr, capRPS, nil
}

// gatewayConfig is Sluice's defaults in front of sims with the options'
// overrides; it notes the window, the forecast and the scale-in hold in
// rep.
func gatewayConfig(o options, sims []string, rep *Report) config.Config {
	cfg := demo.GatewayConfig(sims)
	if o.Window > 0 {
		cfg.Scaling.Window = config.Duration(o.Window)
	}
	rep.Window = cfg.Scaling.Window.D().Seconds()
	cfg.Forecast.Enabled = o.Forecast
	cfg.LoadMetrics.Enabled = o.Scrape
	if o.Headroom > 0 {
		cfg.Scaling.Headroom = o.Headroom
	}
	if o.Delay > 0 {
		cfg.Admission.DelayTarget = config.Duration(o.Delay)
	}
	if rep.Forecast = cfg.Forecast.Enabled; rep.Forecast {
		rep.ScaleInHold = cfg.Scaling.ScaleInHold.D().Seconds()
	}
	for i := range cfg.Models[0].Backends {
		cfg.Models[0].Backends[i].MaxConcurrency = o.MaxConc
	}
	return cfg
}

// replayPolling replays arr against the rig's gateway while polling its
// /scaling into rep.Polls, and keeps polling for --tail after the last
// request: the signal's fall is the point.
func replayPolling(ctx context.Context, o options, rig *benchkit.Rig, arr []bench.Arrival, rep *Report) (*bench.Result, error) {
	cpu0 := sampleCPU()
	start := time.Now()
	pollCtx, stopPolls := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { rep.Polls = poll(pollCtx, rig.Admins[0], o.Poll, start) })
	wg.Go(func() {
		rep.Startup = watchStartup(pollCtx, rig.Admins[0], start, startupEnd(o.Envelope), cpu0, rep.Machine.CPUs)
	})
	res, err := bench.Run(ctx, bench.Config{Target: rig.Targets[0], Model: model, Stream: true, Arrivals: arr,
		Timeout: 60 * time.Second, SLOTTFT: o.SLO, Label: "sluice"})
	tail := o.Tail
	if tail <= 0 {
		tail = 3 * o.Poll
	}
	if err == nil {
		fmt.Fprintf(os.Stderr, "scaling: replay done, polling for %s more\n", tail)
		select {
		case <-time.After(tail):
		case <-ctx.Done():
		}
	}
	stopPolls()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, ctx.Err()
	}
	return res, nil
}

// poll reads /scaling?model= every `every` until ctx ends. A failed read
// is a missed poll, not a zero one.
func poll(ctx context.Context, admin string, every time.Duration, start time.Time) []Poll {
	client := &http.Client{Timeout: every}
	t := time.NewTicker(every)
	defer t.Stop()
	var out []Poll
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/scaling?model="+model, nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var s scaling.Signal
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			out = append(out, Poll{T: time.Since(start).Seconds(), Signal: s})
		}
	}
}

// until keeps the arrivals planned before d.
func until(arr []bench.Arrival, d time.Duration) []bench.Arrival {
	var out []bench.Arrival
	for _, a := range arr {
		if a.At < d {
			out = append(out, a)
		}
	}
	return out
}

func refused(r *bench.Record) bool { return r.Status == 429 || r.Status == 503 }

// Peak is one episode of the envelope: from when the previous peak's
// need fell back (or its drop, or the start) to the next drop in load.
// Times in seconds from the start; -1: never. Rise and fall are judged on
// the need now (needNow), which the scale-in hold does not delay; the held
// signal (what a scaler reads) has its own fall, HeldFellBack.
type Peak struct {
	From, Drop float64
	// Rise is when the need went above the pool's size and stayed there
	// until the episode's first refusal (or, without one, first went above
	// it). The held signal is never below the need, so it rose no later.
	Rise         float64 `json:"rise_s"`
	FirstRefusal float64 `json:"first_refusal_s"`
	Lead         float64 `json:"lead_s"` // FirstRefusal − Rise, when both happened
	Refusals     int     `json:"refusals"`
	MaxDesired   float64 `json:"max_desired"` // of the held signal
	// FellBack is the first poll after the drop with the need below the
	// pool's size.
	FellBack float64 `json:"fell_back_s"`
	// HoldEnds is when the held signal may fall: the last poll before
	// FellBack with the need at or above the pool's size, plus the hold
	// (FellBack without one). HeldFellBack is the first poll after the drop
	// with the held signal below the pool's size; Renewed: the need went
	// above the pool again before HoldEnds (the next peak), so the signal
	// was rightly still held.
	HoldEnds     float64 `json:"hold_ends_s"`
	HeldFellBack float64 `json:"held_fell_back_s"`
	Renewed      bool    `json:"renewed"`
	// Above: the need went above the pool's size at some poll of the
	// episode; without it there was nothing to fall from.
	Above bool `json:"above"`
}

// needNow is what demand and queue need at the poll: the signal's terms,
// before the scale-in hold (equal to desired backends without one).
func needNow(s scaling.Signal) float64 {
	return s.Need.Demand + s.Need.Headroom + s.Need.Burst + s.Need.Queue
}

// heldOK judges the held signal's fall: not before the hold ends (scale-in
// is slow by design) and within slack polls after it, or still held when
// the run ended before the hold did, or held into the next peak.
func (pk Peak) heldOK(end, poll float64) bool {
	switch {
	case pk.FellBack < 0:
		return false
	case pk.Renewed:
		return true
	case pk.HeldFellBack < 0:
		return end < pk.HoldEnds+3*poll
	}
	return pk.HeldFellBack >= pk.HoldEnds-poll/2 && pk.HeldFellBack <= pk.HoldEnds+3*poll
}

// drops are the times the envelope's load falls: a phase starting below 1x
// and below where the one before it ended. The end of the envelope closes
// the last episode.
func drops(env []phase) []float64 {
	var out []float64
	var t time.Duration
	for i, p := range env {
		if i > 0 && p.From < 1 && p.From < env[i-1].To {
			out = append(out, t.Seconds())
		}
		t += p.D
	}
	return out
}

// summarize finds, per peak, the need's rise, the first refusal, the
// need's fall and the held signal's.
func summarize(rep *Report, o options, res *bench.Result) {
	refusals := countRefusals(rep, res)
	for _, p := range rep.Polls {
		// A rounding step below: the hold compares the same float.
		if p.Signal.DesiredBackends < needNow(p.Signal)-1e-9 {
			rep.HeldBelowNeed++
		}
	}
	backends := float64(o.Backends)
	from := 0.0 // refusals before the previous peak's need fell back are that peak's
	for _, drop := range drops(o.Envelope) {
		if o.Until > 0 && drop > o.Until.Seconds() {
			break // not replayed
		}
		pk := judgePeak(from, drop, refusals, rep.Polls, backends, rep.ScaleInHold)
		rep.Peaks = append(rep.Peaks, pk)
		from = drop
		if pk.FellBack >= 0 {
			from = pk.FellBack
		}
	}
	if n := len(rep.Polls); n > 0 {
		rep.FinalDesired = rep.Polls[n-1].Signal.DesiredBackends
	}
}

// countRefusals counts the refused requests into rep, in all and by
// status, and returns when each ended, in seconds from the start.
func countRefusals(rep *Report, res *bench.Result) []float64 {
	rep.RefusalReason = map[string]float64{}
	var refusals []float64
	for i := range res.Records {
		r := &res.Records[i]
		if refused(r) {
			rep.Refusals++
			rep.RefusalReason[fmt.Sprint(r.Status)]++
			refusals = append(refusals, benchkit.Ended(r).Seconds())
		}
	}
	return refusals
}

// judgePeak is the episode from `from` to the load's drop: its refusals,
// the need's rise before the first of them, the need's fall after the drop
// and the held signal's (hold is the scale-in hold, 0 without one).
func judgePeak(from, drop float64, refusals []float64, polls []Poll, backends, hold float64) Peak {
	pk := Peak{From: from, Drop: drop, Rise: -1, FirstRefusal: -1, FellBack: -1, HoldEnds: -1, HeldFellBack: -1}
	for _, t := range refusals {
		if t >= from && t < drop {
			pk.Refusals++
			if pk.FirstRefusal < 0 || t < pk.FirstRefusal {
				pk.FirstRefusal = t
			}
		}
	}
	until := drop
	if pk.FirstRefusal >= 0 {
		until = pk.FirstRefusal
	}
	up := false
	for _, p := range polls {
		d := needNow(p.Signal)
		if p.T >= from && p.T < drop {
			pk.MaxDesired = max(pk.MaxDesired, p.Signal.DesiredBackends)
		}
		if p.T >= from && p.T < drop && d > backends {
			pk.Above = true
		}
		if p.T >= from && p.T <= until {
			switch {
			case d <= backends:
				up = false
			case !up:
				up, pk.Rise = true, p.T
			}
		}
		if pk.FellBack < 0 && p.T >= drop && d < backends {
			pk.FellBack = p.T
		}
		if pk.HeldFellBack < 0 && p.T >= drop && p.Signal.DesiredBackends < backends {
			pk.HeldFellBack = p.T
		}
	}
	if !up && pk.FirstRefusal >= 0 {
		pk.Rise = -1 // down when the refusal came
	}
	if pk.Rise >= 0 && pk.FirstRefusal >= 0 {
		pk.Lead = pk.FirstRefusal - pk.Rise
	}
	if pk.FellBack >= 0 {
		pk.judgeHold(polls, backends, hold)
	}
	return pk
}

// judgeHold sets, for a peak whose need fell back, when the held signal
// may fall (HoldEnds) and whether the need rose above the pool again
// before then (Renewed).
func (pk *Peak) judgeHold(polls []Poll, backends, hold float64) {
	last := -1.0
	for _, p := range polls {
		if p.T >= pk.From && p.T < pk.FellBack && needNow(p.Signal) >= backends {
			last = p.T
		}
	}
	pk.HoldEnds = pk.FellBack
	if last >= 0 && hold > 0 {
		pk.HoldEnds = last + hold
	}
	for _, p := range polls {
		if p.T > pk.FellBack && p.T < pk.HoldEnds && needNow(p.Signal) >= backends {
			pk.Renewed = true
		}
	}
}
