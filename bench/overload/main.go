// Command overload is Sluice's overload benchmark. Its scenarios:
//
//   - goodput (issue 10, the default): real traces (Azure conversation,
//     Mooncake conversation) replayed at 1.2x, 2x and 4x a simulated pool's
//     capacity, against simulators that shed (a bounded waiting queue, as
//     today) and simulators that queue without bound (like vLLM), through
//     round robin ("direct"), one Sluice and two Sluice replicas, all with
//     Sluice's default configuration. It counts requests answered within the
//     TTFT SLO, how every other request ended, and how busy the pool's
//     slots were; then a static max_concurrency sweep (the best a tuned
//     static limit could do) and a Retry-After honesty test.
//   - replay (issue 3): the first trace at 1x-3x capacity, round robin vs
//     Sluice, with backend 503s and refusal times.
//   - fairness (issue 3): one tenant floods, three behave.
//   - mix: goodput on a mixed workload (mix.go): four tenants with ServeGen
//     m-mid's shares (one a newcomer halfway), Azure's real prompt lengths
//     up to 8k tokens, 30% non-streamed, at 1.2x, 2x and 4x, round robin vs
//     Sluice's defaults; per tenant and per class.
//
// Every leg gets fresh simulators and a fresh proxy or gateway, so no leg
// inherits a warm prefix cache, a learned concurrency limit or a queue from
// the one before.
//
//	go run ./bench/overload                         # goodput, about 20 minutes
//	go run ./bench/overload --runs 3                # the documented run, about an hour
//	go run ./bench/overload --quick                 # a smoke run, under 3 minutes
//	go run ./bench/overload --scenarios replay,fairness
//	go run ./bench/overload --quick --scenarios mix # the mix, under 3 minutes
//	go run ./bench/overload --out docs/bench-overload.md --json overload.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

const (
	azureTrace    = "/work/shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv"
	mooncakeTrace = "/work/shared/traces/mooncake_fast25/conversation_trace.jsonl"
)

// Response headers the harness records for every request, in this order
// (bench.Config.HeadersOfInterest; see hdrIndex).
const (
	hdrRetryAfter = "Retry-After"
	// hdrBackend is set by Sluice (expose_backend) on responses relayed from
	// a backend, and never on its own refusals: it tells a backend's
	// "server busy" apart from Sluice's early refusal.
	hdrBackend = "X-Sluice-Backend"
	// hdrQueueTime is the whole milliseconds a request waited in Sluice's
	// queue, on Sluice's refusals and admitted responses ("0": refused at
	// arrival). A gateway that does not send it has every refusal counted
	// as at arrival.
	hdrQueueTime = "X-Sluice-Queue-Time"
)

// interest is the HeadersOfInterest of every leg; hdrIndex maps names to
// positions in bench.Record.Headers.
var (
	interest = []string{hdrRetryAfter, hdrBackend, hdrQueueTime}
	hdrIndex = map[string]int{hdrRetryAfter: 0, hdrBackend: 1, hdrQueueTime: 2}
)

// Default leg lengths per scenario (--duration overrides both).
const (
	replayDuration       = 45 * time.Second
	replayQuickDuration  = 8 * time.Second
	goodputDuration      = 20 * time.Second
	goodputQuickDuration = 10 * time.Second
)

// options are the benchmark's knobs; see the flags in main for each.
type options struct {
	Traces   []string // goodput replays each; replay and fairness use the first
	Backends int
	// Duration is the replay and fairness legs' length; GoodputDuration the
	// goodput legs' (the sweep's too).
	Duration        time.Duration
	GoodputDuration time.Duration
	Loads           []float64 // replay loads, x capacity
	GoodputLoads    []float64 // goodput loads, x capacity
	Regimes         []string  // regimeShed, regimeUnbounded
	Replicas2       bool      // goodput: also run the two-gateway legs
	NoDirect        bool      // goodput: skip the round-robin legs (no reference ratios)
	Runs            int       // goodput: repetitions of every leg
	Sweep           []int     // static max_concurrency values; empty: no sweep
	Honesty         bool      // goodput: run the Retry-After honesty test
	Flood           float64   // flooding tenant's load, x capacity
	Behave          float64   // each behaving tenant's load, x capacity
	Behaving        int       // number of behaving tenants
	TokenScale      float64
	MaxInput        int // clamp, in trace tokens (before TokenScale)
	MaxOutput       int
	SLO             time.Duration // TTFT bound of goodput
	ClientTimeout   time.Duration // per request, streaming included
	MaxConc         int           // tuned legs: static per-backend max_concurrency; 0 = none
	SizeAware       bool          // Sluice legs: admission.size_aware on
	Replay          bool
	Fairness        bool
	Goodput         bool
	Mix             bool
	Seed            uint64
	Sim             sim.Config
	Command         string    // shown in the report
	Progress        io.Writer // one line per leg; nil = silent
	prog            *benchkit.Progress

	// The mix scenario (mix.go).
	MixTrace       string
	MixServeGen    string
	MixTenants     int
	MixNoStream    float64 // share of non-streamed requests
	MixMaxInput    int     // clamp, trace tokens (prompts are not scaled)
	MixMaxOutput   int     // clamp, trace tokens, before MixOutputScale
	MixOutputScale float64
	MixLoads       []float64
	MixRegimes     []string
	MixTPOT        time.Duration // non-streamed answers: time-per-output-token budget
}

// simConfig is the pool's engine: the simulator's documented defaults
// (benchkit.SimConfig). It is the "shed" regime.
func simConfig() sim.Config { return benchkit.SimConfig() }

func main() {
	var opt options
	var f listFlags
	var out, jsonOut string
	opt.Sim = simConfig()
	flag.StringVar(&f.traces, "traces", azureTrace+","+mooncakeTrace, "comma-separated traces (any bench.LoadTrace format); goodput replays each, replay and fairness use the first")
	flag.IntVar(&opt.Backends, "backends", 3, "simulated inference servers in the pool")
	flag.DurationVar(&f.dur, "duration", 0, "length of each leg's arrivals (default 20s for goodput legs, 45s for replay and fairness; --quick: 10s and 8s)")
	flag.BoolVar(&f.quick, "quick", false, "smoke run: goodput on the first trace at 2x only, short legs, no sweep and no honesty test unless asked (under 3 minutes)")
	flag.StringVar(&f.gloads, "goodput-loads", "1.2,2,4", "goodput loads, as multiples of each trace's pool capacity")
	flag.StringVar(&f.regimes, "regimes", "shed,unbounded", "goodput simulator regimes: shed (waiting queue 64, then 503), unbounded (waiting queue 100000)")
	flag.BoolVar(&opt.Replicas2, "replicas2", true, "goodput: also run two Sluice replicas in front of the same simulators")
	flag.BoolVar(&opt.Sim.HideSlots, "hide-slots", false, "simulators leave their slot count (sluice_sim_slots) out of /metrics, as vLLM reports no batch bound: Sluice has only the running and waiting gauges")
	flag.StringVar(&opt.Sim.MetricsStyle, "metrics-style", sim.MetricsVLLM, "simulators' /metrics: vllm, or llamacpp (llama.cpp server's requests_processing and requests_deferred, no slot count: Sluice learns the slots from the queue)")
	flag.BoolVar(&opt.NoDirect, "no-direct", false, "goodput: skip the round-robin legs (the ratios to direct and to the pool's capacity are then n/a); for comparing one Sluice with two")
	flag.IntVar(&opt.Runs, "runs", 1, "goodput: run every leg this many times (fresh simulators and gateways) and report the median")
	flag.StringVar(&f.sweep, "sweep", "16,20,24,28,32", "goodput: static max_concurrency values to sweep at 2x, unbounded, first trace (empty: no sweep)")
	flag.BoolVar(&opt.Honesty, "honesty", true, "goodput: Retry-After honesty test (3x for 10s, then 0.5x for 30s, clients retry once after Retry-After)")
	flag.StringVar(&f.loads, "loads", "1,2,3", "replay loads, as multiples of the pool's capacity")
	flag.Float64Var(&opt.Flood, "flood", 3, "fairness: the flooding tenant's load, x capacity")
	flag.Float64Var(&opt.Behave, "behave", 0.15, "fairness: each well-behaved tenant's load, x capacity")
	flag.IntVar(&opt.Behaving, "behaving", 3, "fairness: number of well-behaved tenants")
	flag.Float64Var(&opt.TokenScale, "token-scale", 0.25, "multiply the trace's token counts (after clamping) so the simulators run fast")
	flag.IntVar(&opt.MaxInput, "max-input", 1024, "clamp the trace's prompt tokens (before --token-scale)")
	flag.IntVar(&opt.MaxOutput, "max-output", 256, "clamp the trace's output tokens (before --token-scale)")
	flag.DurationVar(&opt.SLO, "slo", 2*time.Second, "the SLO: TTFT at most this")
	flag.DurationVar(&opt.ClientTimeout, "client-timeout", 30*time.Second, "goodput: clients give up on a request after this long, streaming included (replay and fairness: 60s)")
	flag.BoolVar(&opt.SizeAware, "size-aware", config.Default().Admission.SizeAware, "Sluice legs: admission.size_aware, short requests first within each tenant's share (--size-aware=false: FIFO per tenant)")
	flag.IntVar(&opt.MaxConc, "max-concurrency", 0, "tuned legs: static per-backend max_concurrency (0 = none); goodput adds such legs beside the default ones, replay and fairness run Sluice with it")
	flag.StringVar(&f.scenarios, "scenarios", "goodput", "scenarios to run: goodput, replay, fairness, mix")
	flag.StringVar(&opt.MixTrace, "mix-trace", azureTrace, "mix: the trace whose arrivals and prompt lengths are replayed")
	flag.StringVar(&opt.MixServeGen, "mix-servegen", mixServeGen, "mix: ServeGen directory (one CSV per client) whose busiest clients give the tenants' shares")
	flag.IntVar(&opt.MixTenants, "mix-tenants", 4, "mix: tenants (the last, the smallest, starts halfway through each leg)")
	flag.Float64Var(&opt.MixNoStream, "mix-non-stream", 0.3, "mix: share of non-streamed requests")
	flag.IntVar(&opt.MixMaxInput, "mix-max-input", 8192, "mix: clamp the prompts (tokens, not scaled)")
	flag.IntVar(&opt.MixMaxOutput, "mix-max-output", 512, "mix: clamp the outputs (tokens, before --mix-output-scale)")
	flag.Float64Var(&opt.MixOutputScale, "mix-output-scale", 0.25, "mix: multiply the outputs (after clamping)")
	flag.DurationVar(&opt.MixTPOT, "mix-tpot", 50*time.Millisecond, "mix: a non-streamed answer is in SLO within --slo + max_tokens x this")
	flag.StringVar(&f.mloads, "mix-loads", "1.2,2,4", "mix: loads, as multiples of the pool's capacity for the mix")
	flag.StringVar(&f.mregimes, "mix-regimes", "shed,unbounded", "mix: simulator regimes (--quick: shed)")
	flag.Uint64Var(&opt.Seed, "seed", 1, "seed of the well-behaved tenants' Poisson arrivals")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()

	if err := f.apply(&opt, benchkit.FlagsSet()); err != nil {
		fatal(err)
	}
	opt.Command = benchkit.CommandLine("./bench/overload", os.Args[1:])
	opt.Progress = os.Stderr

	benchkit.Main("overload", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, opt, md)
	})
}

// listFlags are the flags read into options only after parsing: lists,
// --quick and --duration.
type listFlags struct {
	traces, loads, gloads, regimes, sweep, scenarios string
	mloads, mregimes                                 string
	quick                                            bool
	dur                                              time.Duration
}

// apply parses the lists into opt and sets the durations; set is the
// flags given on the command line.
func (f listFlags) apply(opt *options, set map[string]bool) error {
	var err error
	opt.Traces = benchkit.SplitList(f.traces)
	if opt.Loads, err = parseLoads("--loads", f.loads); err != nil {
		return err
	}
	if opt.GoodputLoads, err = parseLoads("--goodput-loads", f.gloads); err != nil {
		return err
	}
	if opt.Sweep, err = parseInts("--sweep", f.sweep); err != nil {
		return err
	}
	if opt.MixLoads, err = parseLoads("--mix-loads", f.mloads); err != nil {
		return err
	}
	if opt.Regimes, err = parseRegimes("--regimes", f.regimes); err != nil {
		return err
	}
	if opt.MixRegimes, err = parseRegimes("--mix-regimes", f.mregimes); err != nil {
		return err
	}
	for _, s := range benchkit.SplitList(f.scenarios) {
		switch s {
		case "goodput":
			opt.Goodput = true
		case "replay":
			opt.Replay = true
		case "fairness":
			opt.Fairness = true
		case "mix":
			opt.Mix = true
		default:
			return fmt.Errorf("--scenarios: unknown scenario %q (want goodput, replay, fairness, mix)", s)
		}
	}
	f.durations(opt, set)
	return nil
}

// durations sets the legs' lengths and what --quick trims: an explicit
// flag always wins.
func (f listFlags) durations(opt *options, set map[string]bool) {
	opt.Duration, opt.GoodputDuration = replayDuration, goodputDuration
	if f.quick {
		opt.Duration, opt.GoodputDuration = replayQuickDuration, goodputQuickDuration
		if !set["traces"] {
			opt.Traces = opt.Traces[:min(len(opt.Traces), 1)]
		}
		if !set["goodput-loads"] {
			opt.GoodputLoads = []float64{2}
		}
		if !set["sweep"] {
			opt.Sweep = nil
		}
		if !set["honesty"] {
			opt.Honesty = false
		}
		if !set["mix-regimes"] {
			opt.MixRegimes = []string{regimeShed}
		}
	}
	if set["duration"] {
		opt.Duration, opt.GoodputDuration = f.dur, f.dur
	}
}

func fatal(err error) { benchkit.Fatal("overload", err) }

func parseLoads(name, s string) ([]float64, error) {
	var out []float64
	for _, f := range benchkit.SplitList(s) {
		v, err := strconv.ParseFloat(strings.TrimSuffix(f, "x"), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: bad load %q", name, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseRegimes(name, s string) ([]string, error) {
	rs := benchkit.SplitList(s)
	for _, r := range rs {
		if r != regimeShed && r != regimeUnbounded {
			return nil, fmt.Errorf("%s: unknown regime %q (want shed, unbounded)", name, r)
		}
	}
	return rs, nil
}

func parseInts(name, s string) ([]int, error) {
	var out []int
	for _, f := range benchkit.SplitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%s: bad value %q", name, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// Report is everything the benchmark measured; --json writes it.
type Report struct {
	benchkit.Run
	EstimateS float64        `json:"estimated_s"`
	Goodput   *GoodputReport `json:"goodput,omitempty"`
	Mix       *MixReport     `json:"mix,omitempty"`
	Setup     *Setup         `json:"replay_setup,omitempty"`
	Replay    []*Leg         `json:"replay,omitempty"`
	Fairness  []*Leg         `json:"fairness,omitempty"`
	Targets   []Target       `json:"replay_targets,omitempty"`
}

// Target is one target and the measurement against it.
type Target = benchkit.Target

func run(ctx context.Context, opt options, out io.Writer) (*Report, error) {
	if opt.Backends < 1 || opt.Duration <= 0 || opt.SLO <= 0 || !(opt.TokenScale > 0) {
		return nil, errors.New("backends, duration, slo and token-scale must be positive")
	}
	if opt.GoodputDuration <= 0 {
		opt.GoodputDuration = goodputDuration
	}
	if opt.ClientTimeout <= 0 {
		opt.ClientTimeout = 30 * time.Second
	}
	opt.Runs = max(opt.Runs, 1)
	if len(opt.Traces) == 0 {
		return nil, errors.New("no trace given (--traces)")
	}
	if opt.Sim == (sim.Config{}) {
		opt.Sim = simConfig()
	}
	if s := opt.Sim.MetricsStyle; s != "" && s != sim.MetricsVLLM && s != sim.MetricsLlamaCpp {
		return nil, fmt.Errorf("--metrics-style %q: want vllm or llamacpp", s)
	}
	opt.Sim.Model = "sim-model"
	rep := &Report{Run: benchkit.StartRun(opt.Command, time.Now())}
	est := estimate(opt)
	rep.EstimateS = est.Seconds()
	opt.prog = &benchkit.Progress{W: opt.Progress}
	opt.prog.Printf("estimated duration: about %.0f min (drains and the machine's speed vary it)", math.Ceil(est.Minutes()))

	if opt.Goodput {
		g, err := runGoodput(ctx, opt)
		if err != nil {
			return nil, err
		}
		rep.Goodput = g
	}
	if opt.Mix {
		m, err := runMix(ctx, opt)
		if err != nil {
			return nil, err
		}
		rep.Mix = m
	}
	if opt.Replay || opt.Fairness {
		if err := runReplay(ctx, opt, rep); err != nil {
			return nil, err
		}
	}
	rep.End(time.Now())
	ew := &benchkit.ErrWriter{W: out}
	if rep.Goodput != nil {
		writeGoodput(ew, rep)
	}
	if rep.Setup != nil {
		writeReplay(ew, rep)
	}
	if rep.Mix != nil {
		writeMix(ew, rep)
	}
	return rep, ew.Err
}

// estimate is the expected wall time of a run: each leg's arrivals, plus a
// drain (requests still running when the arrivals stop) and a second of
// setup. Only the round-robin legs against unbounded simulators drain for
// long: the backlog they built, (k-1) x the leg, bounded by the client
// timeout.
func estimate(o options) time.Duration {
	const perLeg = 4 * time.Second // drain and setup of a leg that does not pile up
	var t time.Duration
	if o.Goodput {
		d := o.GoodputDuration
		paths := 2
		if o.NoDirect {
			paths--
		}
		if o.Replicas2 {
			paths++
		}
		if o.MaxConc > 0 {
			paths++
		}
		for range o.Traces {
			for _, k := range o.GoodputLoads {
				for _, r := range o.Regimes {
					t += time.Duration(paths*o.Runs) * (d + perLeg)
					if r == regimeUnbounded && k > 1 {
						t += time.Duration(o.Runs) * min(o.ClientTimeout, time.Duration((k-1)*float64(d)))
					}
				}
			}
		}
		t += time.Duration(len(o.Sweep)*o.Runs) * (d + perLeg)
		if o.Honesty {
			t += honestyBurst + honestyCalm + 15*time.Second
		}
	}
	if o.Replay {
		t += time.Duration(2*len(o.Loads)) * (o.Duration + perLeg)
	}
	if o.Mix {
		for _, k := range o.MixLoads {
			for _, r := range o.MixRegimes {
				t += 2 * (o.GoodputDuration + perLeg)
				if r == regimeUnbounded && k > 1 {
					t += min(o.ClientTimeout, time.Duration((k-1)*float64(o.GoodputDuration)))
				}
			}
		}
	}
	if o.Fairness {
		t += 2 * (o.Duration + perLeg)
	}
	return t
}

// newRunConfig is the load generator's configuration shared by every leg.
func newRunConfig(o options, target, label string, arr []bench.Arrival) bench.Config {
	return bench.Config{
		Target: target, Model: "sim-model", Stream: true, Arrivals: arr,
		Timeout: o.ClientTimeout, SLOTTFT: o.SLO, Label: label,
		// Mooncake's hash ids name 512-token blocks; the prompts are scaled
		// by TokenScale, so the blocks are too (no effect on traces without
		// hash ids).
		BlockTokens:       bench.TraceOptions{TokenScale: o.TokenScale}.BlockTokens(),
		HeadersOfInterest: interest,
	}
}
