package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// runBench replays synthetic or traced load against an OpenAI-compatible URL
// and prints the report. Contract relied on by scripts:
//
//	sluice bench --target URL [--rate R | --trace FILE] [--duration D] [--json FILE]
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "--target URL [--rate R | --trace FILE] [--duration D] [--json FILE] [flags]", stderr)
	var (
		target     = fs.String("target", "", "base URL of the endpoint under test, e.g. http://127.0.0.1:8080 (required)")
		path       = fs.String("path", "/v1/chat/completions", "request path")
		model      = fs.String("model", "", "model name sent in each request (default: the first one the target lists at /v1/models)")
		rate       = fs.Float64("rate", 0, "synthetic arrivals per second (during 'on' for --arrival onoff)")
		trace      = fs.String("trace", "", "replay a trace: Azure CSV, Mooncake JSONL, or CSV arrival_s,input_tokens,output_tokens")
		arrival    = fs.String("arrival", "constant", "synthetic arrival process: constant, poisson or onoff")
		on         = fs.Duration("on", 10*time.Second, "burst length for --arrival onoff")
		off        = fs.Duration("off", 10*time.Second, "pause length for --arrival onoff")
		duration   = fs.Duration("duration", 0, "replay length (wall time, after --time-scale); default 60s for --rate, the whole trace for --trace")
		jsonOut    = fs.String("json", "", "also write the result as JSON to this file ('-' = stdout)")
		inTokens   = fs.Int("input-tokens", 256, "prompt words per synthetic request")
		outTokens  = fs.Int("output-tokens", 64, "max_tokens per synthetic request")
		stream     = fs.Bool("stream", true, "request SSE streams (needed to measure TTFT and inter-token latency)")
		timeScale  = fs.Float64("time-scale", 1, "multiply arrival times: 0.1 replays 10x faster (bursts get shorter)")
		rateMult   = fs.Float64("rate-multiplier", 1, "multiply the number of arrivals keeping the timeline: 2 duplicates each arrival, 0.5 keeps every other")
		tokenScale = fs.Float64("token-scale", 1, "multiply input/output tokens and the 512-token prefix block size")
		maxIn      = fs.Int("max-input-tokens", 0, "clamp prompts to this many tokens (0 = no clamp)")
		maxOut     = fs.Int("max-output-tokens", 0, "clamp max_tokens (0 = no clamp)")
		sloTTFT    = fs.Duration("slo-ttft", 2*time.Second, "goodput SLO on time to first token (0 = none)")
		sloE2E     = fs.Duration("slo-e2e", 0, "goodput SLO on end-to-end latency (0 = none)")
		maxReq     = fs.Int("max-requests", 0, "send at most this many requests (0 = no cap)")
		capIn      = fs.Int("concurrency-cap", 10000, "client-side in-flight cap; arrivals beyond it are dropped and counted, not delayed")
		timeout    = fs.Duration("timeout", 5*time.Minute, "per-request timeout")
		drain      = fs.Duration("drain", 0, "after the last arrival, wait this long for in-flight requests (0 = --timeout + 1s)")
		seed       = fs.Uint64("seed", 1, "seed for Poisson arrivals and prompt words")
		label      = fs.String("label", "", "name for this run in the report")
		quiet      = fs.Bool("quiet", false, "no progress lines on stderr")
		apiKeys    stringList
		headers    stringList
		capture    stringList
	)
	fs.Var(&apiKeys, "api-key", "API key sent as a bearer token; repeat for several tenants (arrivals go round robin)")
	fs.Var(&headers, "header", "extra request header K:V (repeatable)")
	fs.Var(&capture, "capture-header", "response header to count by value (repeatable; Retry-After and X-Sluice-Backend by default)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *target == "" {
		fs.Usage()
		return errors.New("--target is required")
	}
	if (*trace == "") == (*rate <= 0) {
		return errors.New("give exactly one of --rate R (> 0) or --trace FILE")
	}
	reqHeaders, err := benchHeaders(headers)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(*seed, *seed^0x5eed))
	opts := bench.TraceOptions{
		TimeScale: *timeScale, RateMultiplier: *rateMult, TokenScale: *tokenScale,
		MaxInputTokens: *maxIn, MaxOutputTokens: *maxOut, Duration: *duration, MaxRequests: *maxReq,
	}
	var arr []bench.Arrival
	if *trace != "" {
		if arr, err = bench.LoadTrace(*trace, opts); err != nil {
			return err
		}
	} else {
		if opts.Duration == 0 {
			opts.Duration = time.Minute
		}
		if arr, err = benchSynthetic(rng, *arrival, *rate, *on, *off, opts, *inTokens, *outTokens); err != nil {
			return err
		}
	}
	if len(arr) == 0 {
		return errors.New("the plan has no arrivals (check --rate, --duration and the trace)")
	}
	if *model == "" {
		if *model, err = bench.DiscoverModel(ctx, nil, *target); err != nil {
			return fmt.Errorf("%w (give --model)", err)
		}
	}
	var tenants []bench.Tenant
	for i, k := range apiKeys {
		tenants = append(tenants, bench.Tenant{Name: fmt.Sprintf("key-%d", i+1), APIKey: k})
	}
	bench.AssignTenants(arr, tenants)
	cfg := bench.Config{
		Target: *target, Path: *path, Model: *model, Stream: *stream,
		Arrivals: arr, MaxInFlight: *capIn, Timeout: *timeout, DrainTimeout: *drain,
		SLOTTFT: *sloTTFT, SLOE2E: *sloE2E, Tenants: tenants, Headers: reqHeaders,
		BlockTokens: opts.BlockTokens(),
		Rand:        rng, Label: *label,
	}
	if len(capture) > 0 {
		cfg.HeadersOfInterest = capture
	}
	if !*quiet {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "bench: %d arrivals over %.1fs against %s\n", len(arr), arr[len(arr)-1].At.Seconds(), *target)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if err := benchWriteJSON(*jsonOut, res, stdout); err != nil {
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
		return nil, fmt.Errorf("--arrival %q: want constant, poisson or onoff", kind)
	}
	return bench.Reshape(arr, opts), nil
}

func benchHeaders(list []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, ":")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want K:V", kv)
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
