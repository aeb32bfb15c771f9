package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/demo"
)

// sampleEvery is how often a leg's simulators and gateway are scraped.
const sampleEvery = 250 * time.Millisecond

// runLeg starts fresh simulators and a gateway routing with policy, replays
// arr and reads the simulators' counters.
func runLeg(ctx context.Context, opt options, s Setup, policy string, arr []bench.Arrival) (*Leg, error) {
	wall := time.Now()
	rig, err := benchkit.StartRig(ctx, opt.Backends, opt.Sim)
	if err != nil {
		return nil, err
	}
	defer rig.Stop()
	urls := rig.Sims
	cfg := demo.GatewayConfig(urls)
	cfg.Models[0].Policy = policy
	cfg.Admission.Enabled = opt.Admission
	if err := rig.Sluice(ctx, cfg); err != nil {
		return nil, err
	}

	smp := rig.Sample(ctx, sampleEvery, 0)
	res, err := bench.Run(ctx, bench.Config{
		Target: rig.Targets[0], Model: "sim-model", Stream: true, Arrivals: arr,
		Timeout: 60 * time.Second, SLOTTFT: opt.SLO, BlockTokens: s.BlockTokens, Label: policy,
	})
	mean, _ := benchkit.Window(smp.Finish(), 0, math.Inf(1))
	queues := make([]float64, len(urls)) // each backend's mean running+waiting; 0 without samples
	copy(queues, mean.Queue)
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
		LagP99ms: res.Lag.P99, KeptUp: res.KeptUp, GatewayQueued: mean.GWQueued, GatewayLimit: mean.GWCapacity, Bench: res}
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
	for _, a := range rig.Admins {
		leg.Hedges += benchkit.SumWhere(benchkit.Scrape(ctx, client, a+"/metrics"), "sluice_hedges_total", "event", "started")
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

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
