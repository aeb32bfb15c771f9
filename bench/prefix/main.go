// Command prefix is Sluice's prefix-affinity benchmark (issue 4, section 6).
// It replays a trace whose requests carry Mooncake prefix hash ids (equal
// ids = equal prompt blocks, so shared prefixes really share leading text)
// through Sluice in front of a pool of simulators with prefix caches, once
// per routing policy, and prints a markdown table: mean and p99 TTFT, the
// simulators' own prefix-cache hit rate, load imbalance and goodput.
//
// Every leg gets fresh simulators (cold prefix caches) and a fresh gateway;
// only the model's routing policy changes between legs.
//
//	go run ./bench/prefix                 # 3 policies x 3 runs, about 4.5 minutes
//	go run ./bench/prefix --quick         # 1 run of 300 requests each, under a minute
//	go run ./bench/prefix --out prefix.md --json prefix.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/sim"
)

const defaultTrace = "/work/shared/traces/mooncake_fast25/synthetic_trace.jsonl"

// The baseline policy and the targets for the others against it.
const (
	baseline        = "least_conn"
	targetTTFTRatio = 0.70 // mean TTFT cut by at least 30%
	targetImbalance = 1.25 // max/mean requests served per backend
)

// options are the benchmark's knobs; see the flags in main for each.
type options struct {
	Trace      string
	Offset     int // first trace request replayed; negative = the last Requests
	Requests   int
	Repeat     int // runs of every policy, interleaved
	Backends   int
	Load       float64 // x the pool's capacity without cache hits
	TokenScale float64
	SLO        time.Duration // TTFT bound of goodput
	MaxWait    time.Duration // Sluice's admission.max_wait
	Admission  bool          // Sluice's admission.enabled (queue and adaptive limits)
	Policies   []string
	Sim        sim.Config
	Command    string    // shown in the report
	Progress   io.Writer // progress lines; nil = silent
}

// simConfig is the pool's engine: the simulator's defaults except a KV
// budget of 131072 tokens and a prefix cache as large (8192 blocks of 16
// tokens), which is how vLLM sizes it: cached blocks live in free KV
// memory. On the default trace slice that is about a fifth of the slice's
// distinct prompt tokens per server: the pool can hold the working set
// once, if each server keeps its own part of it.
func simConfig() sim.Config {
	c := benchkit.SimConfig()
	c.KVTokens, c.PrefixCacheBlocks = 131072, 8192
	return c
}

func main() {
	var opt options
	var quick bool
	var policies, out, jsonOut string
	opt.Sim = simConfig()
	flag.StringVar(&opt.Trace, "trace", defaultTrace, "Mooncake JSONL trace with hash_ids (any bench.LoadTrace format works; without hash_ids nothing is shared)")
	flag.IntVar(&opt.Offset, "offset", -1, "index of the first trace request replayed (-1: the last --requests of the trace, where prefix reuse is highest)")
	flag.IntVar(&opt.Requests, "requests", 1000, "trace requests replayed per leg; --quick sets 300 unless given")
	flag.IntVar(&opt.Repeat, "repeat", 3, "runs of every policy, interleaved (the order rotates each round); the table pools them. --quick sets 1 unless given")
	flag.IntVar(&opt.Backends, "backends", 4, "simulated inference servers in the pool")
	flag.Float64Var(&opt.Load, "load", 0.9, "offered load, as a multiple of the pool's capacity for the mean request without prefix-cache hits")
	flag.Float64Var(&opt.TokenScale, "token-scale", 0.1, "multiply the trace's token counts (and its 512-token prefix blocks) so the simulators run fast")
	flag.DurationVar(&opt.SLO, "slo", 2*time.Second, "goodput SLO: TTFT at most this")
	flag.DurationVar(&opt.MaxWait, "max-wait", config.Default().Admission.MaxWait.D(), "Sluice admission.max_wait (default: the config's)")
	flag.BoolVar(&opt.Admission, "admission", true, "Sluice admission.enabled: its queue and adaptive per-backend concurrency limits (the default); false routes every request at once")
	flag.StringVar(&policies, "policies", "least_conn,prefix_affinity,prefix_affinity+least_load", "routing policies, one leg each, in this order")
	flag.IntVar(&opt.Sim.PrefixCacheBlocks, "prefix-cache-blocks", opt.Sim.PrefixCacheBlocks, "simulator prefix-cache size, in blocks of 16 tokens")
	flag.IntVar(&opt.Sim.KVTokens, "kv-tokens", opt.Sim.KVTokens, "simulator KV-cache budget, tokens")
	flag.Float64Var(&opt.Sim.PrefillTokensPerSec, "prefill-tps", opt.Sim.PrefillTokensPerSec, "simulator prefill speed, tokens/s")
	flag.BoolVar(&quick, "quick", false, "a short smoke run (300 requests per leg)")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()

	set := benchkit.FlagsSet()
	if quick && !set["requests"] {
		opt.Requests = 300
	}
	if quick && !set["repeat"] {
		opt.Repeat = 1
	}
	opt.Policies = benchkit.SplitList(policies)
	opt.Command = benchkit.CommandLine("./bench/prefix", os.Args[1:])
	opt.Progress = os.Stderr

	benchkit.Main("prefix", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, opt, md)
	})
}

func run(ctx context.Context, opt options, out io.Writer) (*Report, error) {
	if opt.Backends < 1 || opt.Requests < 2 || !(opt.Load > 0) || !(opt.TokenScale > 0) || opt.SLO <= 0 {
		return nil, errors.New("backends, requests (at least 2), load, token-scale and slo must be positive")
	}
	if len(opt.Policies) == 0 {
		return nil, errors.New("no policies to run")
	}
	if opt.Sim == (sim.Config{}) {
		opt.Sim = simConfig()
	}
	opt.Sim.Model = "sim-model"
	rep := &Report{Run: benchkit.StartRun(opt.Command, time.Now())}
	arr, setup, err := plan(opt)
	if err != nil {
		return nil, err
	}
	rep.Setup = setup
	repeat := max(opt.Repeat, 1)
	prog := &benchkit.Progress{W: opt.Progress, Legs: repeat * len(opt.Policies)}
	prog.Printf("%d requests at %.1f req/s (%.2gx the pool's no-hit capacity of %.1f req/s), %d legs of %.0f s; shared blocks %.0f%%",
		len(arr), setup.OfferedRPS, opt.Load, setup.CapacityRPS, prog.Legs, setup.SpanS, 100*setup.SharedBlocks)
	byPolicy := map[string][]*Leg{}
	for r := range repeat {
		for i := range opt.Policies {
			p := opt.Policies[(i+r)%len(opt.Policies)] // rotate, so no policy always runs first
			prog.Leg("%s", p)
			leg, err := runLeg(ctx, opt, setup, p, arr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			leg.Run = r + 1
			prog.Printf("      TTFT mean %s p99 %s, hit rate %.1f%%, max/mean served %.2f, goodput %.1f req/s",
				benchkit.MsText(leg.TTFTMeanms), benchkit.MsText(leg.TTFTP99ms), 100*leg.HitRate, leg.Imbalance, leg.GoodputRPS)
			rep.Legs = append(rep.Legs, leg)
			byPolicy[p] = append(byPolicy[p], leg)
		}
	}
	for _, p := range opt.Policies {
		rep.Rows = append(rep.Rows, pool(p, byPolicy[p]))
	}
	rep.Targets = targets(rep.Rows)
	rep.End(time.Now())
	return rep, writeMarkdown(out, rep)
}
