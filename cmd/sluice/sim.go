package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// The request mix the capacity line is stated for: a chat turn with a
// mid-sized prompt and answer.
const (
	simTypicalPrompt = 512
	simTypicalOutput = 128
)

// runSim serves simulated inference servers until ctx is cancelled.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sim", "[flags]")
	listen := fs.String("listen", "127.0.0.1:9001", "address of the first server; more take the next ports (port 0: any free port)")
	count := fs.Int("count", 1, "number of servers")
	var cfg sim.Config
	fs.StringVar(&cfg.Model, "model", sim.DefaultModel, "model id served")
	fs.IntVar(&cfg.Slots, "slots", sim.DefaultSlots, "batch slots: sequences decoded together")
	fs.IntVar(&cfg.KVTokens, "kv-tokens", sim.DefaultKVTokens, "KV-cache budget in tokens (prompt + output of running sequences)")
	fs.IntVar(&cfg.MaxWaiting, "max-waiting", sim.DefaultMaxWaiting, "waiting-queue bound; beyond it requests get 503 server busy")
	fs.Float64Var(&cfg.PrefillTokensPerSec, "prefill-tps", sim.DefaultPrefillTokensPerSec, "prefill speed in tokens/s")
	fs.DurationVar(&cfg.DecodeStepBase, "step", sim.DefaultDecodeStepBase, "decode step time at batch size 1")
	fs.DurationVar(&cfg.DecodeStepPerSeq, "step-per-seq", sim.DefaultDecodeStepPerSeq, "extra decode step time per running sequence")
	fs.IntVar(&cfg.BlockSize, "block-size", sim.DefaultBlockSize, "prefix-cache block size in tokens")
	fs.IntVar(&cfg.PrefixCacheBlocks, "prefix-blocks", sim.DefaultPrefixCacheBlocks, "prefix-cache capacity in blocks")
	fs.IntVar(&cfg.DefaultMaxTokens, "default-max-tokens", sim.DefaultOutputTokens, "output tokens when a request sets no max_tokens")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the output text and fault draws (server i uses seed+i)")
	fs.BoolVar(&cfg.Instant, "instant", false, "no engine: answer at once with a fixed short completion")
	fs.BoolVar(&cfg.HideSlots, "hide-slots", false, "leave sluice_sim_slots out of /metrics: a gateway reads no batch bound, as from vLLM")
	fs.StringVar(&cfg.MetricsStyle, "metrics-style", sim.MetricsVLLM, "whose series /metrics writes: vllm, or llamacpp (llama-server's requests_processing and requests_deferred, no slot count, as llama.cpp reports)")
	fs.Float64Var(&cfg.Faults.ErrorRate, "error-rate", 0, "fraction of requests answered 500")
	fs.DurationVar(&cfg.Faults.AddedLatency, "latency", 0, "latency added before each request is served")
	fs.Float64Var(&cfg.Faults.HangRate, "hang-rate", 0, "fraction of requests that never answer")
	fs.Float64Var(&cfg.Faults.DisconnectRate, "disconnect-rate", 0, "fraction of responses cut off half-way")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"error-rate", cfg.Faults.ErrorRate}, {"hang-rate", cfg.Faults.HangRate}, {"disconnect-rate", cfg.Faults.DisconnectRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return usagef("--%s %v: want a fraction within [0, 1]", r.name, r.v)
		}
	}
	// sim.Config takes zero or less for a default: a value the user
	// typed is refused rather than silently replaced.
	for _, n := range []struct {
		name string
		v    int
	}{{"count", *count}, {"slots", cfg.Slots}, {"kv-tokens", cfg.KVTokens}, {"max-waiting", cfg.MaxWaiting},
		{"block-size", cfg.BlockSize}, {"prefix-blocks", cfg.PrefixCacheBlocks}, {"default-max-tokens", cfg.DefaultMaxTokens}} {
		if n.v < 1 {
			return usagef("--%s %d: want at least 1", n.name, n.v)
		}
	}
	if !(cfg.PrefillTokensPerSec > 0) || math.IsInf(cfg.PrefillTokensPerSec, 0) {
		return usagef("--prefill-tps %v: want a positive number", cfg.PrefillTokensPerSec)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"step", cfg.DecodeStepBase}, {"step-per-seq", cfg.DecodeStepPerSeq}} {
		if d.v <= 0 {
			return usagef("--%s %v: want a positive duration", d.name, d.v)
		}
	}
	if cfg.MetricsStyle != sim.MetricsVLLM && cfg.MetricsStyle != sim.MetricsLlamaCpp {
		return usagef("--metrics-style %q: want vllm or llamacpp", cfg.MetricsStyle)
	}
	if cfg.Faults.AddedLatency < 0 {
		return usagef("--latency %v: want zero or more", cfg.Faults.AddedLatency)
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	urls, stop, err := sim.ListenAndServeN(ctx, *listen, *count, cfg, logger)
	if err != nil {
		// net's error names the address taken; this names the flag.
		return fmt.Errorf("starting simulators (--listen %s, --count %d): %w", *listen, *count, err)
	}
	defer stop()
	for _, u := range urls {
		fmt.Fprintln(stdout, u)
	}
	if cfg.Instant {
		fmt.Fprintln(stdout, "instant mode: fixed 4-token answers, no modelled capacity limit")
	} else {
		rps, tps := cfg.Capacity(simTypicalPrompt, simTypicalOutput)
		fmt.Fprintf(stdout, "capacity for prompt %d / output %d tokens: %.2f req/s, %.0f output tokens/s per server; %.2f req/s, %.0f tokens/s for all %d\n",
			simTypicalPrompt, simTypicalOutput, rps, tps, rps*float64(len(urls)), tps*float64(len(urls)), len(urls))
	}
	<-ctx.Done()
	return nil
}
