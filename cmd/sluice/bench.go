package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// benchFlags are `sluice bench`'s flags.
type benchFlags struct {
	target, path, model, trace, arrival, jsonOut, label *string
	rate, timeScale, rateMult, tokenScale               *float64
	on, off, duration, sloTTFT, sloE2E, timeout, drain  *time.Duration
	inTokens, outTokens, maxIn, maxOut, maxReq, capIn   *int
	stream, quiet                                       *bool
	seed                                                *uint64
	apiKeys, headers, capture                           stringList
}

func newBenchFlags(fs *flag.FlagSet) *benchFlags {
	f := &benchFlags{
		target:     fs.String("target", "", "base URL of the endpoint under test, e.g. http://127.0.0.1:8080 (required)"),
		path:       fs.String("path", "/v1/chat/completions", "request path"),
		model:      fs.String("model", "", "model name sent in each request (default: the first one the target lists at /v1/models)"),
		rate:       fs.Float64("rate", 0, "synthetic arrivals per second (during 'on' for --arrival onoff)"),
		trace:      fs.String("trace", "", "replay a trace: Azure CSV, Mooncake JSONL, or CSV arrival_s,input_tokens,output_tokens"),
		arrival:    fs.String("arrival", "constant", "synthetic arrival process: constant, poisson or onoff"),
		on:         fs.Duration("on", 10*time.Second, "burst length for --arrival onoff"),
		off:        fs.Duration("off", 10*time.Second, "pause length for --arrival onoff"),
		duration:   fs.Duration("duration", 0, "replay length (wall time, after --time-scale); default 60s for --rate, the whole trace for --trace"),
		jsonOut:    fs.String("json", "", "also write the result as JSON to this file ('-' = stdout)"),
		inTokens:   fs.Int("input-tokens", 256, "prompt words per synthetic request"),
		outTokens:  fs.Int("output-tokens", 64, "max_tokens per synthetic request"),
		stream:     fs.Bool("stream", true, "request SSE streams (needed to measure TTFT and inter-token latency)"),
		timeScale:  fs.Float64("time-scale", 1, "multiply arrival times: 0.1 replays 10x faster (bursts get shorter)"),
		rateMult:   fs.Float64("rate-multiplier", 1, "multiply the number of arrivals keeping the timeline: 2 duplicates each arrival, 0.5 keeps every other"),
		tokenScale: fs.Float64("token-scale", 1, "multiply input/output tokens and the 512-token prefix block size"),
		maxIn:      fs.Int("max-input-tokens", 0, "clamp prompts to this many tokens (0 = no clamp)"),
		maxOut:     fs.Int("max-output-tokens", 0, "clamp max_tokens (0 = no clamp)"),
		sloTTFT:    fs.Duration("slo-ttft", 2*time.Second, "goodput SLO on time to first token (0 = none)"),
		sloE2E:     fs.Duration("slo-e2e", 0, "goodput SLO on end-to-end latency (0 = none)"),
		maxReq:     fs.Int("max-requests", 0, "send at most this many requests (0 = no cap)"),
		capIn:      fs.Int("concurrency-cap", 10000, "client-side in-flight cap; arrivals beyond it are dropped and counted, not delayed"),
		timeout:    fs.Duration("timeout", 5*time.Minute, "per-request timeout"),
		drain:      fs.Duration("drain", 0, "after the last arrival, wait this long for in-flight requests (0 = --timeout + 1s)"),
		seed:       fs.Uint64("seed", 1, "seed for Poisson arrivals and prompt words"),
		label:      fs.String("label", "", "name for this run in the report"),
		quiet:      fs.Bool("quiet", false, "no progress lines on stderr"),
	}
	fs.Var(&f.apiKeys, "api-key", "API key sent as a bearer token; repeat for several tenants (arrivals go round robin)")
	fs.Var(&f.headers, "header", "extra request header K:V (repeatable)")
	fs.Var(&f.capture, "capture-header", "response header to count by value (repeatable; Retry-After and X-Sluice-Backend by default)")
	return f
}

// check refuses a command line the replay cannot take: what is required,
// and the values the planner would otherwise read as a default (a zero
// --time-scale) or turn into nonsense (NaN, a negative multiplier).
func (f *benchFlags) check() error {
	switch {
	case *f.target == "":
		return usagef("--target is required")
	case (*f.trace == "") == (*f.rate <= 0):
		return usagef("give exactly one of --rate R (> 0) or --trace FILE")
	}
	for _, v := range []struct {
		name string
		v    float64
	}{{"rate", *f.rate}, {"time-scale", *f.timeScale}, {"rate-multiplier", *f.rateMult}, {"token-scale", *f.tokenScale}} {
		if math.IsNaN(v.v) || math.IsInf(v.v, 0) || v.v < 0 || (v.v == 0 && v.name != "rate") {
			return usagef("--%s %v: want a positive number", v.name, v.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"input-tokens", *f.inTokens}, {"output-tokens", *f.outTokens}, {"concurrency-cap", *f.capIn}} {
		if n.v < 1 {
			return usagef("--%s %d: want at least 1", n.name, n.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max-input-tokens", *f.maxIn}, {"max-output-tokens", *f.maxOut}, {"max-requests", *f.maxReq}} {
		if n.v < 0 {
			return usagef("--%s %d: want 0 (no limit) or more", n.name, n.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duration", *f.duration}, {"drain", *f.drain}, {"slo-ttft", *f.sloTTFT}, {"slo-e2e", *f.sloE2E}} {
		if d.v < 0 {
			return usagef("--%s %v: want zero or more", d.name, d.v)
		}
	}
	if *f.timeout <= 0 {
		return usagef("--timeout %v: want a positive duration", *f.timeout)
	}
	return nil
}

// traceOptions reshape the plan: time and rate scaling, token scaling and
// clamps, its length and request cap.
func (f *benchFlags) traceOptions() bench.TraceOptions {
	return bench.TraceOptions{
		TimeScale: *f.timeScale, RateMultiplier: *f.rateMult, TokenScale: *f.tokenScale,
		MaxInputTokens: *f.maxIn, MaxOutputTokens: *f.maxOut, Duration: *f.duration, MaxRequests: *f.maxReq,
	}
}

// plan is the arrivals: the trace, reshaped, or a synthetic process (60 s
// unless --duration says otherwise).
func (f *benchFlags) plan(rng *rand.Rand) ([]bench.Arrival, error) {
	opts := f.traceOptions()
	if *f.trace != "" {
		return bench.LoadTrace(*f.trace, opts)
	}
	if opts.Duration == 0 {
		opts.Duration = time.Minute
	}
	return benchSynthetic(rng, *f.arrival, *f.rate, *f.on, *f.off, opts, *f.inTokens, *f.outTokens)
}

// config is the load generator's configuration for arr.
func (f *benchFlags) config(arr []bench.Arrival, rng *rand.Rand, reqHeaders http.Header) bench.Config {
	var tenants []bench.Tenant
	for i, k := range f.apiKeys {
		tenants = append(tenants, bench.Tenant{Name: fmt.Sprintf("key-%d", i+1), APIKey: k})
	}
	bench.AssignTenants(arr, tenants)
	cfg := bench.Config{
		Target: *f.target, Path: *f.path, Model: *f.model, Stream: *f.stream,
		Arrivals: arr, MaxInFlight: *f.capIn, Timeout: *f.timeout, DrainTimeout: *f.drain,
		SLOTTFT: *f.sloTTFT, SLOE2E: *f.sloE2E, Tenants: tenants, Headers: reqHeaders,
		BlockTokens: f.traceOptions().BlockTokens(),
		Rand:        rng, Label: *f.label,
	}
	if len(f.capture) > 0 {
		cfg.HeadersOfInterest = f.capture
	}
	return cfg
}

// runBench replays synthetic or traced load against an OpenAI-compatible URL
// and prints the report. Contract relied on by scripts:
//
//	sluice bench --target URL [--rate R | --trace FILE] [--duration D] [--json FILE]
//
// `sluice bench forecast ...` scores the traffic forecaster instead (see
// bench_forecast.go); `sluice bench autoscale ...` compares scaling
// controllers on a replayed trace (bench_autoscale.go).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "forecast" {
		return inMode("bench forecast", runBenchForecast(ctx, args[1:], stdout, stderr))
	}
	if len(args) > 0 && args[0] == "autoscale" {
		return inMode("bench autoscale", runBenchAutoscale(ctx, args[1:], stdout, stderr))
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return usagef("unknown bench mode %q: want flags (a load replay), forecast or autoscale", args[0])
	}
	fs := newFlagSet("bench", "--target URL [--rate R | --trace FILE] [--duration D] [--json FILE] [flags]\n       sluice bench forecast --servegen DIR [--horizon 10m,30m,60m]  (its own flags: bench forecast --help)\n       sluice bench autoscale --servegen DIR --lengths AZURE_CSV  (its own flags: bench autoscale --help)")
	f := newBenchFlags(fs.FlagSet)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	reqHeaders, err := benchHeaders(f.headers)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(*f.seed, *f.seed^0x5eed))
	arr, err := f.plan(rng)
	if err != nil {
		return err
	}
	if len(arr) == 0 {
		return errors.New("the plan has no arrivals (check --rate, --duration and the trace)")
	}
	if *f.model == "" {
		if *f.model, err = bench.DiscoverModel(ctx, nil, *f.target); err != nil {
			return fmt.Errorf("%w (give --model)", err)
		}
	}
	cfg := f.config(arr, rng, reqHeaders)
	if !*f.quiet {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "bench: %d arrivals over %.1fs against %s\n", len(arr), arr[len(arr)-1].At.Seconds(), *f.target)
	}
	return benchRun(ctx, cfg, *f.jsonOut, stdout)
}

// benchRun runs the load and writes the report (and the JSON).
func benchRun(ctx context.Context, cfg bench.Config, jsonOut string, stdout io.Writer) error {
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if err := benchWriteJSON(jsonOut, res, stdout); err != nil {
		return err
	}
	if res.Interrupted {
		return fmt.Errorf("interrupted; the report covers the part that ran: %w", ctx.Err())
	}
	return nil
}

// benchSynthetic plans a generated arrival process. It is generated over
// duration/time-scale so that, once reshaped, the replay lasts --duration.
func benchSynthetic(rng *rand.Rand, kind string, rate float64, on, off time.Duration, opts bench.TraceOptions, in, out int) ([]bench.Arrival, error) {
	span := opts.Duration
	if opts.TimeScale > 0 {
		span = time.Duration(float64(span) / opts.TimeScale)
	}
	var arr []bench.Arrival
	switch kind {
	case "constant":
		arr = bench.Constant(rate, span, in, out)
	case "poisson":
		arr = bench.Poisson(rng, rate, span, in, out)
	case "onoff":
		arr = bench.OnOff(rate, on, off, span, in, out)
	default:
		return nil, usagef("--arrival %q: want constant, poisson or onoff", kind)
	}
	return bench.Reshape(arr, opts), nil
}

func benchHeaders(list []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, ":")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, usagef("--header %q: want K:V", kv)
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h, nil
}

func benchWriteJSON(path string, res *bench.Result, stdout io.Writer) error {
	switch path {
	case "":
		return nil
	case "-":
		return res.WriteJSON(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	if err := res.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}
