package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Report is everything the benchmark measured; --json writes it.
type Report struct {
	benchkit.Run
	Setup   Setup    `json:"setup"`
	Rows    []*Leg   `json:"policies"` // each policy's runs pooled
	Legs    []*Leg   `json:"runs"`
	Targets []Target `json:"targets,omitempty"`
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
	// Hedges is the streams the gateway hedged (sluice_hedges_total,
	// started): a hedge's losing leg may still run to its end at its
	// backend, so the backends' Served can exceed OK by up to this.
	Hedges       float64 `json:"hedges_started"`
	GatewayLimit float64 `json:"gateway_limit_mean"`
	GoodputRPS   float64 `json:"goodput_rps"`
	GoodputShare float64 `json:"goodput_share"` // of offered
	LagP99ms     float64 `json:"generator_lag_p99_ms"`
	KeptUp       bool    `json:"generator_kept_up"`
	WallS        float64 `json:"wall_s"`
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
type Target = benchkit.Target

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
			Target{Name: fmt.Sprintf("`%s`: mean TTFT <= 0.70 x `%s`", l.Policy, baseline),
				Measured: fmt.Sprintf("%.2f (%s vs %s)", r, benchkit.MsText(l.TTFTMeanms), benchkit.MsText(base.TTFTMeanms)), Pass: r <= targetTTFTRatio},
			Target{Name: fmt.Sprintf("`%s`: max/mean requests served <= 1.25 in every run", l.Policy),
				Measured: fmt.Sprintf("%.2f (worst run %.2f)", l.Imbalance, l.ImbalanceMax), Pass: l.ImbalanceMax <= targetImbalance})
	}
	return ts
}

func writeMarkdown(w io.Writer, rep *Report) error {
	ew := &benchkit.ErrWriter{W: w}
	writeSetup(ew, rep)
	writeTable(ew, rep)
	return ew.Err
}

// writeSetup writes the title and what the legs ran on.
func writeSetup(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	s := rep.Setup
	adm := "on (the default: gateway queue, adaptive per-backend concurrency limits)"
	if !s.Admission {
		adm = "off (every request is routed at once; no per-backend limit)"
	}
	p("### %d backends, %gx load, Sluice admission %s\n\n", s.Backends, s.Load, strings.Fields(adm)[0])
	ew.RunHeader(rep.Run)
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
}

// writeTable writes the policies' table, the legs' notes and the targets.
func writeTable(ew *benchkit.ErrWriter, rep *Report) {
	p := ew.Printf
	runs := 0
	if len(rep.Rows) > 0 {
		runs = rep.Rows[0].Runs
	}
	p("Each policy ran %d times, interleaved; requests, TTFT and the hit rate are pooled over its runs, the max/mean columns and goodput averaged. "+
		"\"runs\" is the lowest and highest run's mean TTFT; max/mean served is the runs' mean (and the worst run).\n\n", runs)
	ew.TableHead(benchkit.Cols("policy", "requests>", "ok>", "mean TTFT>", "runs>", "p50 TTFT>", "p99 TTFT>", "prefix-cache hit rate>",
		"max/mean served>", "max/mean queue>", "max/mean prefill>", "goodput req/s>", "Sluice queue / limit (mean)>"))
	for _, l := range rep.Rows {
		gw := benchkit.OrDash(rep.Setup.Admission, "%.1f / %.1f", l.GatewayQueued, l.GatewayLimit)
		ew.Row("`"+l.Policy+"`", fmt.Sprint(l.Requests), fmt.Sprint(l.OK), benchkit.MsText(l.TTFTMeanms),
			benchkit.MsText(l.TTFTMeanMin)+"-"+benchkit.MsText(l.TTFTMeanMax), benchkit.MsText(l.TTFTP50ms), benchkit.MsText(l.TTFTP99ms),
			fmt.Sprintf("%.1f%%", 100*l.HitRate), fmt.Sprintf("%.2f (%.2f)", l.Imbalance, l.ImbalanceMax), fmt.Sprintf("%.2f", l.QueueImbalance),
			fmt.Sprintf("%.2f", l.PrefillImbalance), fmt.Sprintf("%.1f (%.0f%%)", l.GoodputRPS, 100*l.GoodputShare), gw)
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
		p("\n")
		ew.Targets("target (issue 4)", rep.Targets, benchkit.PassFail)
	}
	p("\n")
}
