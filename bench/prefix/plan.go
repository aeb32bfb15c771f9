package main

import (
	"fmt"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/sim"
)

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
	slice, span, err := benchkit.Slice(tr, off, n)
	if err != nil {
		return nil, Setup{}, err
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
	s.OfferedRPS = opt.Load * s.CapacityRPS
	s.SpanS = float64(n) / s.OfferedRPS
	arr, ts := benchkit.Stretch(slice, span, time.Duration(s.SpanS*float64(time.Second)))
	s.TimeScale = ts
	return arr, s, nil
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
