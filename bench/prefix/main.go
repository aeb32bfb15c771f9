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
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/demo"
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
	return sim.Config{Model: "sim-model", Slots: 16, KVTokens: 131072, MaxWaiting: 64,
		PrefillTokensPerSec: 20000, DecodeStepBase: 10 * time.Millisecond,
		DecodeStepPerSeq: 250 * time.Microsecond, BlockSize: 16, PrefixCacheBlocks: 8192}
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
	flag.DurationVar(&opt.MaxWait, "max-wait", 10*time.Second, "Sluice admission.max_wait (its default)")
	flag.BoolVar(&opt.Admission, "admission", true, "Sluice admission.enabled: its queue and adaptive per-backend concurrency limits (the default); false routes every request at once")
	flag.StringVar(&policies, "policies", "least_conn,prefix_affinity,prefix_affinity+least_load", "routing policies, one leg each, in this order")
	flag.IntVar(&opt.Sim.PrefixCacheBlocks, "prefix-cache-blocks", opt.Sim.PrefixCacheBlocks, "simulator prefix-cache size, in blocks of 16 tokens")
	flag.IntVar(&opt.Sim.KVTokens, "kv-tokens", opt.Sim.KVTokens, "simulator KV-cache budget, tokens")
	flag.Float64Var(&opt.Sim.PrefillTokensPerSec, "prefill-tps", opt.Sim.PrefillTokensPerSec, "simulator prefill speed, tokens/s")
	flag.BoolVar(&quick, "quick", false, "a short smoke run (300 requests per leg)")
	flag.StringVar(&out, "out", "", "also write the markdown report to this file")
	flag.StringVar(&jsonOut, "json", "", "write the full results as JSON to this file")
	flag.Parse()

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if quick && !set["requests"] {
		opt.Requests = 300
	}
	if quick && !set["repeat"] {
		opt.Repeat = 1
	}
	opt.Policies = splitList(policies)
	opt.Command = benchkit.CommandLine("./bench/prefix", os.Args[1:])
	opt.Progress = os.Stderr

	benchkit.Main("prefix", out, jsonOut, func(ctx context.Context, md *strings.Builder) (*Report, error) {
		return run(ctx, opt, md)
	})
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "prefix:", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Report is everything the benchmark measured; --json writes it.
type Report struct {
	Command string           `json:"command"`
	Machine benchkit.Machine `json:"machine"`
	Setup   Setup            `json:"setup"`
	Rows    []*Leg           `json:"policies"` // each policy's runs pooled
	Legs    []*Leg           `json:"runs"`
	Targets []Target         `json:"targets,omitempty"`
	Started time.Time        `json:"started"`
	Elapsed float64          `json:"elapsed_s"`
}

// Setup is the trace slice, the pool and the gateway configuration.
type Setup struct {
	Trace        string     `json:"trace"`
	TraceRows    int        `json:"trace_rows"`
	Offset       int        `json:"offset"`
	Requests     int        `json:"requests"`
	TokenScale   float64    `json:"token_scale"`
	BlockTokens  int        `json:"block_tokens"` // prompt words per hash id
	MeanPrompt   float64    `json:"mean_prompt_tokens"`
	MeanOutput   float64    `json:"mean_output_tokens"`
	MaxPrompt    int        `json:"max_prompt_tokens"`
	WithHashIDs  int        `json:"requests_with_hash_ids"`
	SharedBlocks float64    `json:"shared_block_share"` // blocks seen earlier in the slice, after a shared prefix
	WorkingSet   int        `json:"working_set_tokens"` // distinct prompt blocks x BlockTokens
	Backends     int        `json:"backends"`
	Sim          sim.Config `json:"sim"`
	PerServerRPS float64    `json:"per_server_rps"`
	CapacityRPS  float64    `json:"capacity_rps"`
	Load         float64    `json:"load_x_capacity"`
	OfferedRPS   float64    `json:"offered_rps"`
	TimeScale    float64    `json:"trace_time_scale"`
	SpanS        float64    `json:"span_s"`
	SLOTTFTms    float64    `json:"slo_ttft_ms"`
	MaxWait      string     `json:"sluice_max_wait"`
	Admission    bool       `json:"sluice_admission"`
}

// Leg is one replay of the slice through Sluice with one policy, or (in
// Report.Rows) a policy's runs pooled: counts summed, TTFT percentiles and
// the hit rate over all its requests, the other ratios averaged over runs.
type Leg struct {
	Policy string `json:"policy"`
	Run    int    `json:"run,omitempty"`  // 1-based; 0 in a pooled row
	Runs   int    `json:"runs,omitempty"` // pooled rows only
	// TTFTMeanMin and Max are the lowest and highest run's mean TTFT
	// (pooled rows only).
	TTFTMeanMin float64 `json:"ttft_mean_min_ms,omitempty"`
	TTFTMeanMax float64 `json:"ttft_mean_max_ms,omitempty"`
	// ImbalanceMax is the highest run's Imbalance (pooled rows only).
	ImbalanceMax float64 `json:"imbalance_served_max,omitempty"`
	Requests     int     `json:"requests"`
	OK           int     `json:"ok"`
	Refused      int     `json:"refused"`
	Failed       int     `json:"failed"`
	TTFTMeanms   float64 `json:"ttft_mean_ms"`
	TTFTP50ms    float64 `json:"ttft_p50_ms"`
	TTFTP99ms    float64 `json:"ttft_p99_ms"`
	// HitRate is the pool's prefix-cache hit rate in tokens, from the
	// simulators' own counters: vllm:prefix_cache_hits_total over
	// vllm:prefix_cache_queries_total, summed over the backends.
	HitRate float64 `json:"prefix_cache_hit_rate"`
	// Imbalance is max/mean over the backends of the requests each served
	// (vllm:request_success_total). QueueImbalance is max/mean of each
	// backend's time-averaged running+waiting (sampled from /metrics), and
	// PrefillImbalance max/mean of the prompt tokens each had to compute
	// (queried minus cache hits): the work behind the requests.
	Imbalance        float64   `json:"imbalance_served"`
	QueueImbalance   float64   `json:"imbalance_queue"`
	PrefillImbalance float64   `json:"imbalance_prefill"`
	Backends         []Backend `json:"backends"`
	// GatewayQueued is the mean of Sluice's queue (sluice_queue_waiting),
	// GatewayLimit of the sum of its per-backend concurrency limits
	// (sluice_queue_capacity); both 0 with admission off.
	GatewayQueued float64 `json:"gateway_queued_mean"`
	GatewayLimit  float64 `json:"gateway_limit_mean"`
	GoodputRPS    float64 `json:"goodput_rps"`
	GoodputShare  float64 `json:"goodput_share"` // of offered
	LagP99ms      float64 `json:"generator_lag_p99_ms"`
	KeptUp        bool    `json:"generator_kept_up"`
	WallS         float64 `json:"wall_s"`
	// Bench is the load generator's own result (records omitted).
	Bench *bench.Result `json:"bench"`
}

// Backend is one simulator's own account of a leg.
type Backend struct {
	Served       float64 `json:"served"`
	PromptTokens float64 `json:"prompt_tokens"`
	CachedTokens float64 `json:"cached_tokens"`
	MeanQueue    float64 `json:"mean_running_plus_waiting"`
}

// Target is one of the targets and the measurement against it.
type Target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
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
	start := time.Now()
	rep := &Report{Command: opt.Command, Machine: benchkit.ReadMachine(), Started: start.UTC()}
	arr, setup, err := plan(opt)
	if err != nil {
		return nil, err
	}
	rep.Setup = setup
	repeat := max(opt.Repeat, 1)
	legs := repeat * len(opt.Policies)
	progress(opt, "%d requests at %.1f req/s (%.2gx the pool's no-hit capacity of %.1f req/s), %d legs of %.0f s; shared blocks %.0f%%",
		len(arr), setup.OfferedRPS, opt.Load, setup.CapacityRPS, legs, setup.SpanS, 100*setup.SharedBlocks)
	byPolicy := map[string][]*Leg{}
	for r := range repeat {
		for i := range opt.Policies {
			p := opt.Policies[(i+r)%len(opt.Policies)] // rotate, so no policy always runs first
			progress(opt, "[%d/%d] %s (load avg %s)", len(rep.Legs)+1, legs, p, benchkit.Loadavg())
			leg, err := runLeg(ctx, opt, setup, p, arr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			leg.Run = r + 1
			progress(opt, "      TTFT mean %s p99 %s, hit rate %.1f%%, max/mean served %.2f, goodput %.1f req/s",
				benchkit.MsText(leg.TTFTMeanms), benchkit.MsText(leg.TTFTP99ms), 100*leg.HitRate, leg.Imbalance, leg.GoodputRPS)
			rep.Legs = append(rep.Legs, leg)
			byPolicy[p] = append(byPolicy[p], leg)
		}
	}
	for _, p := range opt.Policies {
		rep.Rows = append(rep.Rows, pool(p, byPolicy[p]))
	}
	rep.Targets = targets(rep.Rows)
	rep.Machine.LoadAfter = benchkit.Loadavg()
	rep.Elapsed = time.Since(start).Seconds()
	return rep, writeMarkdown(out, rep)
}

func progress(opt options, format string, args ...any) {
	if opt.Progress != nil {
		fmt.Fprintf(opt.Progress, format+"\n", args...)
	}
}

// plan loads the trace, cuts the slice and time-scales it so its mean rate
// is Load x the pool's capacity for the slice's mean request (no hits).
func plan(opt options) ([]bench.Arrival, Setup, error) {
	topt := bench.TraceOptions{TokenScale: opt.TokenScale}
	tr, err := bench.LoadTrace(opt.Trace, topt)
	if err != nil {
		return nil, Setup{}, err
	}
	n := opt.Requests
	if n > len(tr) {
		return nil, Setup{}, fmt.Errorf("trace %s has %d requests, --requests asks for %d", opt.Trace, len(tr), n)
	}
	off := opt.Offset
	if off < 0 {
		off = len(tr) - n
	}
	if off+n > len(tr) {
		return nil, Setup{}, fmt.Errorf("--offset %d + --requests %d is past the trace's %d requests", off, n, len(tr))
	}
	slice := slices.Clone(tr[off : off+n])
	t0 := slice[0].At
	for i := range slice {
		slice[i].At -= t0
	}
	s := Setup{Trace: opt.Trace, TraceRows: len(tr), Offset: off, Requests: n, TokenScale: opt.TokenScale,
		BlockTokens: topt.BlockTokens(), Backends: opt.Backends, Sim: opt.Sim, Load: opt.Load,
		SLOTTFTms: ms(opt.SLO), MaxWait: opt.MaxWait.String(), Admission: opt.Admission}
	kv := opt.Sim.KVTokens
	if kv <= 0 {
		kv = sim.DefaultKVTokens
	}
	var p, o float64
	for _, a := range slice {
		p += float64(a.InputTokens)
		o += float64(a.OutputTokens)
		s.MaxPrompt = max(s.MaxPrompt, a.InputTokens)
		if len(a.HashIDs) > 0 {
			s.WithHashIDs++
		}
		if a.InputTokens+a.OutputTokens > kv {
			return nil, Setup{}, fmt.Errorf("a request of %d+%d tokens does not fit the simulator's KV budget of %d (lower --token-scale)",
				a.InputTokens, a.OutputTokens, kv)
		}
	}
	s.MeanPrompt, s.MeanOutput = p/float64(n), o/float64(n)
	var distinct int
	s.SharedBlocks, distinct = sharedBlocks(slice)
	s.WorkingSet = distinct * s.BlockTokens
	s.PerServerRPS = benchkit.Capacity(opt.Sim, s.MeanPrompt, s.MeanOutput)
	s.CapacityRPS = s.PerServerRPS * float64(opt.Backends)
	if !(s.CapacityRPS > 0) {
		return nil, Setup{}, fmt.Errorf("the simulator cannot serve the mean request (prompt %.0f, output %.0f)", s.MeanPrompt, s.MeanOutput)
	}
	// The slice spans from its first arrival to the one after its last
	// (or one mean gap past the last at the trace's end).
	var span time.Duration
	if off+n < len(tr) {
		span = tr[off+n].At - t0
	} else {
		span = slice[n-1].At + slice[n-1].At/time.Duration(n-1)
	}
	if span <= 0 {
		return nil, Setup{}, errors.New("trace: the requests planned all arrive at once")
	}
	s.OfferedRPS = opt.Load * s.CapacityRPS
	want := float64(n) / s.OfferedRPS // seconds
	s.TimeScale = want / span.Seconds()
	s.SpanS = want
	return bench.Reshape(slice, bench.TraceOptions{TimeScale: s.TimeScale}), s, nil
}

// sharedBlocks is the share of the slice's prompt blocks that continue a
// prefix an earlier request of the slice already had: the hit rate of one
// infinite prefix cache that saw every request, an upper bound for a pool.
// It also returns the number of distinct blocks (prefixes).
func sharedBlocks(arr []bench.Arrival) (float64, int) {
	type node struct {
		parent uint64
		id     int
	}
	seen := map[node]uint64{}
	var total, shared int
	for _, a := range arr {
		var at uint64 // 0 = the root; chained ids name prefixes
		hit := true
		for _, id := range a.HashIDs {
			total++
			k := node{at, id}
			next, ok := seen[k]
			if !ok {
				next = uint64(len(seen) + 1)
				seen[k] = next
				hit = false
			}
			if hit {
				shared++
			}
			at = next
		}
	}
	if total == 0 {
		return 0, 0
	}
	return float64(shared) / float64(total), len(seen)
}

// runLeg starts fresh simulators and a gateway routing with policy, replays
// arr and reads the simulators' counters.
func runLeg(ctx context.Context, opt options, s Setup, policy string, arr []bench.Arrival) (*Leg, error) {
	wall := time.Now()
	urls, stopSims, err := sim.ListenAndServeN(ctx, "127.0.0.1:0", opt.Backends, opt.Sim, nil)
	if err != nil {
		return nil, err
	}
	defer stopSims()
	cfg := demo.GatewayConfig(urls)
	cfg.Models[0].Policy = policy
	cfg.Admission.Enabled = opt.Admission
	gw, err := demo.StartGateway(ctx, &cfg, nil)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()
	target := gw.URL

	smp := startSampler(ctx, urls, gw.AdminURL, 250*time.Millisecond)
	res, err := bench.Run(ctx, bench.Config{
		Target: target, Model: "sim-model", Stream: true, Arrivals: arr,
		Timeout: 60 * time.Second, SLOTTFT: opt.SLO, BlockTokens: s.BlockTokens, Label: policy,
	})
	queues, gwQueue, gwLimit := smp.finish()
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, ctx.Err()
	}
	leg := &Leg{Policy: policy, Requests: res.Planned, OK: res.OK, Refused: res.Refused,
		Failed:     res.Sent - res.OK - res.Refused + res.DroppedByClient,
		TTFTMeanms: res.TTFT.Mean, TTFTP50ms: res.TTFT.P50, TTFTP99ms: res.TTFT.P99,
		GoodputRPS: float64(res.Goodput.Count) / s.SpanS, GoodputShare: res.Goodput.Fraction,
		LagP99ms: res.Lag.P99, KeptUp: res.KeptUp, GatewayQueued: gwQueue, GatewayLimit: gwLimit, Bench: res}
	client := &http.Client{Timeout: 5 * time.Second}
	var hits, queries float64
	served := make([]float64, len(urls))
	prefill := make([]float64, len(urls))
	for i, u := range urls {
		m := benchkit.Scrape(ctx, client, u+"/metrics")
		if m == nil {
			return nil, fmt.Errorf("backend %s: cannot read /metrics", u)
		}
		b := Backend{Served: benchkit.Sum(m, "vllm:request_success_total"), PromptTokens: benchkit.Sum(m, "vllm:prefix_cache_queries_total"),
			CachedTokens: benchkit.Sum(m, "vllm:prefix_cache_hits_total"), MeanQueue: queues[i]}
		leg.Backends = append(leg.Backends, b)
		hits += b.CachedTokens
		queries += b.PromptTokens
		served[i] = b.Served
		prefill[i] = b.PromptTokens - b.CachedTokens
	}
	if queries > 0 {
		leg.HitRate = hits / queries
	}
	leg.Imbalance, leg.QueueImbalance, leg.PrefillImbalance = maxOverMean(served), maxOverMean(queues), maxOverMean(prefill)
	leg.WallS = time.Since(wall).Seconds()
	return leg, nil
}

// pool combines a policy's runs into one row.
func pool(policy string, runs []*Leg) *Leg {
	row := &Leg{Policy: policy, Runs: len(runs), KeptUp: true, TTFTMeanMin: math.Inf(1)}
	var ttft []time.Duration
	var hits, queries float64
	n := float64(len(runs))
	for _, l := range runs {
		row.Requests += l.Requests
		row.OK += l.OK
		row.Refused += l.Refused
		row.Failed += l.Failed
		row.TTFTMeanMin = min(row.TTFTMeanMin, l.TTFTMeanms)
		row.TTFTMeanMax = max(row.TTFTMeanMax, l.TTFTMeanms)
		for _, b := range l.Backends {
			hits += b.CachedTokens
			queries += b.PromptTokens
		}
		row.Imbalance += l.Imbalance / n
		row.ImbalanceMax = max(row.ImbalanceMax, l.Imbalance)
		row.QueueImbalance += l.QueueImbalance / n
		row.PrefillImbalance += l.PrefillImbalance / n
		row.GoodputRPS += l.GoodputRPS / n
		row.GatewayQueued += l.GatewayQueued / n
		row.GatewayLimit += l.GatewayLimit / n
		row.GoodputShare += l.GoodputShare / n
		row.LagP99ms = max(row.LagP99ms, l.LagP99ms)
		row.KeptUp = row.KeptUp && l.KeptUp
		row.WallS += l.WallS
		for i := range l.Bench.Records {
			if rec := &l.Bench.Records[i]; rec.OK() && rec.TTFT > 0 {
				ttft = append(ttft, rec.TTFT)
			}
		}
	}
	if queries > 0 {
		row.HitRate = hits / queries
	}
	if len(ttft) > 0 {
		var total time.Duration
		for _, d := range ttft {
			total += d
		}
		row.TTFTMeanms = ms(total) / float64(len(ttft))
		slices.Sort(ttft)
		row.TTFTP50ms, row.TTFTP99ms = pctl(ttft, 50), pctl(ttft, 99)
	}
	return row
}

// pctl is the nearest-rank p-th percentile of sorted ds, in milliseconds.
func pctl(sorted []time.Duration, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return ms(sorted[min(max(rank, 1), len(sorted))-1])
}

// maxOverMean is max(xs)/mean(xs), 0 when the mean is 0.
func maxOverMean(xs []float64) float64 {
	var total, top float64
	for _, x := range xs {
		total += x
		top = max(top, x)
	}
	if total <= 0 {
		return 0
	}
	return top / (total / float64(len(xs)))
}

// targets compares every other policy with the baseline: mean TTFT cut by
// at least 30%, and at most 1.25 max/mean requests served per backend.
func targets(legs []*Leg) []Target {
	var base *Leg
	for _, l := range legs {
		if l.Policy == baseline {
			base = l
			break
		}
	}
	if base == nil || base.TTFTMeanms <= 0 {
		return nil
	}
	var ts []Target
	for _, l := range legs {
		if l == base {
			continue
		}
		r := l.TTFTMeanms / base.TTFTMeanms
		ts = append(ts,
			Target{fmt.Sprintf("`%s`: mean TTFT <= 0.70 x `%s`", l.Policy, baseline),
				fmt.Sprintf("%.2f (%s vs %s)", r, benchkit.MsText(l.TTFTMeanms), benchkit.MsText(base.TTFTMeanms)), r <= targetTTFTRatio},
			Target{fmt.Sprintf("`%s`: max/mean requests served <= 1.25 in every run", l.Policy),
				fmt.Sprintf("%.2f (worst run %.2f)", l.Imbalance, l.ImbalanceMax), l.ImbalanceMax <= targetImbalance})
	}
	return ts
}

func writeMarkdown(w io.Writer, rep *Report) error {
	ew := &benchkit.ErrWriter{W: w}
	p := ew.Printf
	s := rep.Setup
	adm := "on (the default: gateway queue, adaptive per-backend concurrency limits)"
	if !s.Admission {
		adm = "off (every request is routed at once; no per-backend limit)"
	}
	p("### %d backends, %gx load, Sluice admission %s\n\n", s.Backends, s.Load, strings.Fields(adm)[0])
	ew.Header(rep.Command, rep.Machine, rep.Started, rep.Elapsed)
	p("- Trace: `%s`, requests %d-%d of %d (%d with hash ids). Token counts scaled by %g, prefix blocks with them (%d words per hash id; equal ids give equal words). "+
		"Mean prompt %.0f tokens (max %d), mean output %.1f. %.0f%% of the slice's prompt blocks continue a prefix an earlier request of the slice had (the hit rate of one infinite cache that saw everything); "+
		"its distinct prompt blocks hold %d tokens (the working set).\n",
		s.Trace, s.Offset, s.Offset+s.Requests-1, s.TraceRows, s.WithHashIDs, s.TokenScale, s.BlockTokens,
		s.MeanPrompt, s.MaxPrompt, s.MeanOutput, 100*s.SharedBlocks, s.WorkingSet)
	sc := s.Sim
	cache := sc.PrefixCacheBlocks * sc.BlockSize
	p("- Pool: %d simulators (`internal/sim`), each %d slots, KV %d tokens, prefix cache %d blocks of %d tokens (LRU; %d tokens, %.0f%% of the working set), prefill %.0f tok/s (the batch stalls while it runs), decode step %s + %s per sequence.\n",
		s.Backends, sc.Slots, sc.KVTokens, sc.PrefixCacheBlocks, sc.BlockSize, cache, 100*float64(cache)/float64(max(s.WorkingSet, 1)),
		sc.PrefillTokensPerSec, sc.DecodeStepBase, sc.DecodeStepPerSeq)
	p("- Load: the pool's capacity for the mean request without cache hits (`sim.Config.Capacity`) is %.2f req/s per server, %.1f for the pool; "+
		"the slice is time-scaled (x%.3g) to %gx that, **%.1f req/s** over %.0f s, keeping the trace's arrival pattern. Open loop, streaming, one client.\n",
		s.PerServerRPS, s.CapacityRPS, s.TimeScale, s.Load, s.OfferedRPS, s.SpanS)
	p("- Sluice: `config.Default()` with one model and the policy of the leg; admission %s, max_wait %s. Every leg starts fresh simulators (cold caches) and a fresh gateway.\n", adm, s.MaxWait)
	p("- Hit rate: prompt tokens served from the prefix caches over prompt tokens queried, from the simulators' own `vllm:prefix_cache_*` counters. "+
		"Max/mean served: requests completed per backend (`vllm:request_success_total`), the busiest over the mean. "+
		"Queue and prefill columns: max/mean of each backend's time-averaged running+waiting (sampled every 250 ms) and of the prompt tokens it had to compute. "+
		"Sluice queue / limit: the mean of requests waiting in the gateway and of the sum of its adaptive per-backend concurrency limits (`sluice_queue_waiting`, `sluice_queue_capacity`). "+
		"Goodput: requests with TTFT <= %s per second of the arrivals' span.\n\n", time.Duration(s.SLOTTFTms*float64(time.Millisecond)))

	runs := 0
	if len(rep.Rows) > 0 {
		runs = rep.Rows[0].Runs
	}
	p("Each policy ran %d times, interleaved; requests, TTFT and the hit rate are pooled over its runs, the max/mean columns and goodput averaged. "+
		"\"runs\" is the lowest and highest run's mean TTFT; max/mean served is the runs' mean (and the worst run).\n\n", runs)
	p("| policy | requests | ok | mean TTFT | runs | p50 TTFT | p99 TTFT | prefix-cache hit rate | max/mean served | max/mean queue | max/mean prefill | goodput req/s | Sluice queue / limit (mean) |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, l := range rep.Rows {
		gw := "-"
		if s.Admission {
			gw = fmt.Sprintf("%.1f / %.1f", l.GatewayQueued, l.GatewayLimit)
		}
		p("| `%s` | %d | %d | %s | %s-%s | %s | %s | %.1f%% | %.2f (%.2f) | %.2f | %.2f | %.1f (%.0f%%) | %s |\n",
			l.Policy, l.Requests, l.OK, benchkit.MsText(l.TTFTMeanms), benchkit.MsText(l.TTFTMeanMin), benchkit.MsText(l.TTFTMeanMax), benchkit.MsText(l.TTFTP50ms), benchkit.MsText(l.TTFTP99ms),
			100*l.HitRate, l.Imbalance, l.ImbalanceMax, l.QueueImbalance, l.PrefillImbalance, l.GoodputRPS, 100*l.GoodputShare, gw)
	}
	p("\n")
	var behind []string
	for _, l := range rep.Legs {
		if !l.KeptUp {
			behind = append(behind, fmt.Sprintf("`%s` run %d (lag p99 %s)", l.Policy, l.Run, benchkit.MsText(l.LagP99ms)))
		}
		if l.Refused+l.Failed > 0 {
			p("- `%s` run %d: %d refused, %d failed.\n", l.Policy, l.Run, l.Refused, l.Failed)
		}
	}
	if len(behind) > 0 {
		p("- The load generator fell behind its plan (lag p99 >= 50 ms) in %s: the machine was busy.\n", strings.Join(behind, ", "))
	}
	if len(rep.Targets) > 0 {
		p("\n| target (issue 4) | measured | result |\n|---|---|---|\n")
		for _, t := range rep.Targets {
			r := "**FAIL**"
			if t.Pass {
				r = "pass"
			}
			p("| %s | %s | %s |\n", t.Name, t.Measured, r)
		}
	}
	p("\n")
	return ew.Err
}

// sampler polls the simulators' /metrics while a leg runs and keeps each
// one's summed running+waiting.
type sampler struct {
	sims    []string
	gateway string // the gateway's admin base URL, where /metrics is
	client  *http.Client
	mu      sync.Mutex
	n       int
	queue   []float64
	gwQueue float64 // summed sluice_queue_waiting
	gwLimit float64 // summed sluice_queue_capacity
	done    chan struct{}
	wg      sync.WaitGroup
}

func startSampler(ctx context.Context, sims []string, gateway string, every time.Duration) *sampler {
	s := &sampler{sims: sims, gateway: gateway, client: &http.Client{Timeout: every}, queue: make([]float64, len(sims)), done: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.done:
				return
			case <-tick.C:
				s.sample(ctx)
			}
		}
	})
	return s
}

func (s *sampler) sample(ctx context.Context) {
	q := make([]float64, len(s.sims))
	for i, u := range s.sims {
		m := benchkit.Scrape(ctx, s.client, u+"/metrics")
		if m == nil {
			return // a missed sample, not a zero one
		}
		q[i] = benchkit.Sum(m, "vllm:num_requests_running") + benchkit.Sum(m, "vllm:num_requests_waiting")
	}
	g := benchkit.Scrape(ctx, s.client, s.gateway+"/metrics")
	if g == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.gwQueue += benchkit.Sum(g, "sluice_queue_waiting")
	s.gwLimit += benchkit.Sum(g, "sluice_queue_capacity")
	for i, v := range q {
		s.queue[i] += v
	}
}

// finish stops sampling and returns each backend's mean running+waiting,
// and the means of the gateway's queue and of its summed backend limits.
func (s *sampler) finish() (queues []float64, gwQueue, gwLimit float64) {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, len(s.queue))
	if s.n == 0 {
		return out, 0, 0
	}
	for i, v := range s.queue {
		out[i] = v / float64(s.n)
	}
	return out, s.gwQueue / float64(s.n), s.gwLimit / float64(s.n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
