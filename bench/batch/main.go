// Command batch is Sluice's batch benchmark (issue 5, section 5): a steady
// interactive load at a fraction of a simulated pool's capacity, first
// alone and then beside a large OpenAI Batch API batch, through one gateway
// with its embedded job queue. It prints the markdown of docs/BENCHMARKS.md:
// interactive TTFT with and without the batch, the share of the spare
// capacity the batch used, and how long the batch took.
//
// Two legs, each with fresh simulators and a fresh gateway (queue and
// workers on in both, so the only difference is the batch):
//
//	A  interactive Poisson load at --load x capacity for --duration
//	B  the same arrivals (same seed), with the batch created at the start;
//	   the interactive load stops after --duration and the batch finishes
//	   alone, which measures what the pool and the job pipeline deliver to
//	   the batch when nothing else runs
//
//	go run ./bench/batch                  # the full run, about 4 minutes
//	go run ./bench/batch --quick          # a smoke run, about a minute
//	go run ./bench/batch --out /tmp/batch.md --json /tmp/batch.json
//	go run ./bench/batch --defaults       # Sluice's defaults, not the tuned workers/limits
//	go run ./bench/batch --headroom 4,8 --preempt --batch 3000   # plus prototype legs
//
// --headroom and --preempt add legs that run the same batch behind
// prototypes (proto.go) that keep slots free for interactive arrivals or
// stop running jobs while interactive requests wait: experiments to size a
// change to Sluice's job gate, reported apart from the targets, which are
// measured on Sluice as it is (leg B).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

const defaultTrace = "/work/shared/traces/azure2023/AzureLLMInferenceTrace_conv.csv"

// Targets of issue 5 §5.
const (
	targetTTFTRise  = 1.10 // interactive p99 TTFT with the batch / without
	targetSpareUsed = 0.80 // share of the spare capacity the batch uses
)

// options are the benchmark's knobs; see the flags in main for each.
type options struct {
	// Interactive request sizes: drawn from Trace (scaled by TokenScale,
	// clamped to MaxInput/MaxOutput before scaling), or fixed Prompt /
	// Output tokens when Trace is "".
	Trace          string
	TokenScale     float64
	MaxInput       int
	MaxOutput      int
	Prompt, Output int

	Backends int
	Load     float64       // interactive load, x the pool's capacity
	Duration time.Duration // W: length of the interactive load
	SLO      time.Duration // goodput: TTFT at most this

	BatchSize   int // requests in the batch
	BatchPrompt int // prompt tokens of each batch request
	BatchOutput int // max_tokens of each batch request
	// BatchTimeout bounds leg B after the interactive load ended.
	BatchTimeout time.Duration

	Workers int     // queue.workers (in-gateway job workers)
	MaxConc int     // static per-backend max_concurrency; 0 = adaptive limits
	Reserve float64 // admission.spare_reserve (share of capacity); < 0 = Sluice's default
	// Headroom adds one leg per value: the batch again, its jobs run
	// behind a prototype gate that keeps that many slots free (see
	// headroomGate). Not Sluice's behaviour; an experiment.
	Headroom []int
	// Preempt adds a leg running the batch behind a prototype that stops
	// the youngest running job while interactive requests wait (see
	// preemptor).
	Preempt bool

	Seed     uint64
	Sim      sim.Config
	Command  string    // shown in the report
	Progress io.Writer // progress lines; nil = silent
	// Poll is how often leg B reads the batch's status; Sample how often
	// both legs read the simulators' and the gateway's /metrics.
	Poll, Sample time.Duration
}

func defaultOptions() options {
	s := benchkit.SimConfig()
	return options{
		Trace: defaultTrace, TokenScale: 0.25, MaxInput: 1024, MaxOutput: 256, Prompt: 192, Output: 40,
		Backends: 3, Load: 0.7, Duration: 60 * time.Second, SLO: 2 * time.Second,
		BatchSize: 10000, BatchPrompt: 128, BatchOutput: 32, BatchTimeout: 10 * time.Minute,
		Workers: 48, MaxConc: s.Slots, Seed: 1, Sim: s,
		Poll: 250 * time.Millisecond, Sample: 250 * time.Millisecond,
	}
}

func main() {
	opt := defaultOptions()
	var quick bool
	var out, jsonOut string
	flag.StringVar(&opt.Trace, "trace", opt.Trace, `interactive request sizes from this trace (any bench.LoadTrace format); "" = fixed --prompt/--output`)
	flag.Float64Var(&opt.TokenScale, "token-scale", opt.TokenScale, "multiply the trace's token counts (after clamping)")
	flag.IntVar(&opt.MaxInput, "max-input", opt.MaxInput, "clamp the trace's prompt tokens (before --token-scale)")
	flag.IntVar(&opt.MaxOutput, "max-output", opt.MaxOutput, "clamp the trace's output tokens (before --token-scale)")
	flag.IntVar(&opt.Prompt, "prompt", opt.Prompt, `interactive prompt tokens when --trace ""`)
	flag.IntVar(&opt.Output, "output", opt.Output, `interactive output tokens when --trace ""`)
	flag.IntVar(&opt.Backends, "backends", opt.Backends, "simulated inference servers in the pool")
	flag.Float64Var(&opt.Load, "load", opt.Load, "interactive load, as a multiple of the pool's capacity")
	flag.DurationVar(&opt.Duration, "duration", opt.Duration, "length of the interactive load in each leg; --quick sets 15s unless given")
	flag.DurationVar(&opt.SLO, "slo", opt.SLO, "goodput SLO: TTFT at most this")
	flag.IntVar(&opt.BatchSize, "batch", opt.BatchSize, "requests in the batch; --quick sets 1000 unless given")
	flag.IntVar(&opt.BatchPrompt, "batch-prompt", opt.BatchPrompt, "prompt tokens of each batch request")
	flag.IntVar(&opt.BatchOutput, "batch-output", opt.BatchOutput, "max_tokens of each batch request")
	flag.DurationVar(&opt.BatchTimeout, "batch-timeout", opt.BatchTimeout, "give up on the batch this long after the interactive load ended")
	flag.IntVar(&opt.Workers, "workers", opt.Workers, fmt.Sprintf("queue.workers: in-gateway job workers (Sluice's default is %d)", config.Default().Queue.Workers))
	flag.Float64Var(&opt.Reserve, "spare-reserve", -1, "admission.spare_reserve: share of slots jobs leave free while interactive requests run (< 0: Sluice's default)")
	flag.IntVar(&opt.MaxConc, "max-concurrency", opt.MaxConc, "static per-backend max_concurrency (default: the simulator's slots); 0 = Sluice's adaptive limits")
	flag.Func("headroom", "comma-separated slot counts: add a leg per value running the batch behind a prototype gate that keeps that many slots free (an experiment, not Sluice's gate)", func(v string) error {
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("bad slot count %q", f)
			}
			opt.Headroom = append(opt.Headroom, n)
		}
		return nil
	})
	flag.BoolVar(&opt.Preempt, "preempt", false, "add a leg running the batch behind a prototype that preempts running jobs while interactive requests wait (an experiment, not Sluice's behaviour)")
	flag.Uint64Var(&opt.Seed, "seed", opt.Seed, "seed of the interactive arrivals and sizes")
	flag.BoolVar(&quick, "quick", false, "a short smoke run")
	var defaults bool
	flag.BoolVar(&defaults, "defaults", false, "run Sluice's defaults: queue.workers and the adaptive concurrency limits of config.Default() instead of the tuned --workers 48 --max-concurrency 16 (an explicit --workers or --max-concurrency still wins)")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()

	set := benchkit.FlagsSet()
	if quick && !set["duration"] {
		opt.Duration = 15 * time.Second
	}
	if quick && !set["batch"] {
		opt.BatchSize = 1000
	}
	if defaults {
		opt = withDefaults(opt, set)
	}
	opt.Command = benchkit.CommandLine("./bench/batch", os.Args[1:])
	opt.Progress = os.Stderr

	benchkit.Main("batch", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, opt, md)
	})
}

// withDefaults returns o with Sluice's own defaults for the settings the
// benchmark otherwise tunes (queue.workers, a static max_concurrency),
// except those named in set (flags given on the command line).
func withDefaults(o options, set map[string]bool) options {
	if !set["workers"] {
		o.Workers = config.Default().Queue.Workers
	}
	if !set["max-concurrency"] {
		o.MaxConc = 0
	}
	return o
}

func (o options) validate() error {
	switch {
	case o.Backends < 1:
		return fmt.Errorf("--backends must be at least 1")
	case !(o.Load > 0) || o.Load >= 1:
		return fmt.Errorf("--load must be in (0, 1): the batch needs spare capacity")
	case o.Duration <= 0:
		return fmt.Errorf("--duration must be positive")
	case o.BatchSize < 1:
		return fmt.Errorf("--batch must be at least 1")
	case o.BatchPrompt < 2 || o.BatchOutput < 1:
		return fmt.Errorf("--batch-prompt must be at least 2 and --batch-output at least 1")
	case o.Workers < 1:
		return fmt.Errorf("--workers must be at least 1")
	case o.MaxConc < 0:
		return fmt.Errorf("--max-concurrency must not be negative")
	case o.Trace == "" && (o.Prompt < 1 || o.Output < 1):
		return fmt.Errorf("--prompt and --output must be at least 1")
	}
	return nil
}

// harness holds what both legs share: the plan and the capacities.
type harness struct {
	opt   options
	sizes []bench.Arrival // interactive request sizes to draw from
	meanP float64         // mean interactive prompt tokens of the plan
	meanO float64         // mean interactive output tokens of the plan
	capI  float64         // pool req/s for the interactive mix (formula)
	capB  float64         // pool req/s for the batch request (formula)
	plan  []bench.Arrival // interactive arrivals, the same in every leg
	input []byte          // the batch's JSONL input file

	progress *benchkit.Progress
}

// run executes both legs and writes the markdown report to out.
func run(ctx context.Context, opt options, out io.Writer) (*Report, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	rep := &Report{Run: benchkit.StartRun(opt.Command, time.Now())}
	h := &harness{opt: opt, progress: &benchkit.Progress{W: opt.Progress}}
	if err := h.prepare(); err != nil {
		return nil, err
	}
	rep.Setup = h.setup()
	h.progress.Printf("pool capacity (formula): %.1f req/s for the interactive mix (%.0f/%.0f tokens), %.1f req/s for batch requests (%d/%d); interactive %.1f req/s, %d arrivals over %s; batch of %d",
		h.capI, h.meanP, h.meanO, h.capB, opt.BatchPrompt, opt.BatchOutput, opt.Load*h.capI, len(h.plan), opt.Duration, opt.BatchSize)

	specs := []legSpec{
		{name: "A: interactive alone"},
		{name: fmt.Sprintf("B: interactive + batch of %d", opt.BatchSize), batch: true},
	}
	for _, r := range opt.Headroom {
		specs = append(specs, legSpec{name: fmt.Sprintf("C%d: B keeping %d slots free (prototype)", r, r), batch: true, reserve: r})
	}
	if opt.Preempt {
		specs = append(specs, legSpec{name: "D: B preempting jobs for waiting requests (prototype)", batch: true, preempt: true})
	}
	h.progress.Legs = len(specs)
	for _, spec := range specs {
		leg, err := h.runLeg(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec.name, err)
		}
		rep.Legs = append(rep.Legs, leg)
	}
	// The measured ceiling is leg B's: the prototype legs keep their rules
	// when the batch runs alone, so their own rate alone is not the pool's.
	ceiling := rep.Legs[1].Batch.AloneRPS
	for _, l := range rep.Legs[1:] {
		l.Figures = h.figures(rep.Legs[0], l, ceiling)
	}
	rep.Targets = targets(*rep.Legs[1].Figures)
	rep.End(time.Now())
	return rep, writeMarkdown(out, rep)
}

// prepare loads the interactive sizes, derives the capacities and builds
// the interactive plan and the batch file.
func (h *harness) prepare() error {
	o := h.opt
	if o.Trace != "" {
		tr, err := benchkit.LoadTrace(o.Trace, o.TokenScale, o.MaxInput, o.MaxOutput)
		if err != nil {
			return err
		}
		if len(tr) == 0 {
			return fmt.Errorf("trace %s: no requests", o.Trace)
		}
		h.sizes = tr[:min(len(tr), 2000)]
	} else {
		h.sizes = []bench.Arrival{{InputTokens: o.Prompt, OutputTokens: o.Output}}
	}
	// The plan has exactly round(Load x capacity x W) arrivals: a Poisson
	// process conditioned on its count (uniform times over W), so the
	// offered load is exactly Load whatever the seed. The capacity depends
	// on the mean size of the requests drawn and the count on the
	// capacity: a few rounds of fixed-point iteration settle both.
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	drawn := make([]bench.Arrival, 0, 4096)
	draw := func(n int) []bench.Arrival {
		for len(drawn) < n {
			s := h.sizes[rng.IntN(len(h.sizes))]
			drawn = append(drawn, bench.Arrival{InputTokens: s.InputTokens, OutputTokens: s.OutputTokens})
		}
		return drawn[:n]
	}
	n := 1000
	for range 5 {
		h.meanP, h.meanO = benchkit.MeanTokens(draw(n))
		h.capI = benchkit.Capacity(o.Sim, h.meanP, h.meanO) * float64(o.Backends)
		if !(h.capI > 0) {
			return fmt.Errorf("the simulator cannot serve the mean interactive request (prompt %.0f, output %.0f)", h.meanP, h.meanO)
		}
		n = max(int(math.Round(o.Load*h.capI*o.Duration.Seconds())), 1)
	}
	h.plan = slices.Clone(draw(n))
	h.meanP, h.meanO = benchkit.MeanTokens(h.plan)
	h.capI = benchkit.Capacity(o.Sim, h.meanP, h.meanO) * float64(o.Backends)
	at := make([]time.Duration, n)
	for i := range at {
		at[i] = time.Duration(rng.Int64N(int64(o.Duration)))
	}
	slices.Sort(at)
	for i := range h.plan {
		h.plan[i].At = at[i]
	}
	b, _ := o.Sim.Capacity(o.BatchPrompt, o.BatchOutput)
	if !(b > 0) {
		return fmt.Errorf("the simulator cannot serve a batch request of %d+%d tokens", o.BatchPrompt, o.BatchOutput)
	}
	h.capB = b * float64(o.Backends)
	h.input = batchInput(o.Sim.Model, o.BatchSize, o.BatchPrompt, o.BatchOutput)
	return nil
}

// batchInput is the batch's JSONL file: n chat completions of prompt words
// and max_tokens output. Every prompt starts with its own word, so no two
// share a prefix-cache block or a response-cache entry.
func batchInput(model string, n, prompt, output int) []byte {
	var b strings.Builder
	words := make([]string, prompt)
	for i := range n {
		words[0] = fmt.Sprintf("b%05d", i)
		for j := 1; j < prompt; j++ {
			words[j] = vocab[(i*7+j*13)%len(vocab)]
		}
		body, _ := json.Marshal(map[string]any{
			"model":      model,
			"messages":   []map[string]string{{"role": "user", "content": strings.Join(words, " ")}},
			"max_tokens": output,
		})
		fmt.Fprintf(&b, `{"custom_id":"req-%05d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, body)
	}
	return []byte(b.String())
}

var vocab = strings.Fields(`summarise the following ticket and label its topic as billing shipping
returns account or other then give a one line reason for the label chosen`)
