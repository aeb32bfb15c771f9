package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"github.com/sluice-gw/sluice/internal/bench"
)

// pool is one trace prepared for the simulated pool: clamped and
// token-scaled, with the pool's capacity for the trace's mean request.
// Every trace gets its own capacity, since their request sizes differ.
type pool struct {
	Path   string
	trace  []bench.Arrival // clamped and token-scaled, at trace speed
	capRPS float64         // pool
	perSrv float64
	meanP  float64
	meanO  float64
	meanN  int // the mean is over the first meanN requests
}

// traceName is a short name for tables: the trace file's base name.
func traceName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// loadPool reads a trace and derives the pool's capacity for its mean
// request. The capacity depends on the mean over the requests the largest
// plan replays (capSeconds x capacity of them), and that count depends on
// the capacity: a few rounds of fixed-point iteration settle it.
func loadPool(o options, path string, capSeconds float64) (*pool, error) {
	tr, err := benchkit.LoadTrace(path, o.TokenScale, o.MaxInput, o.MaxOutput)
	if err != nil {
		return nil, err
	}
	return poolOf(o, path, tr, capSeconds)
}

// poolOf is loadPool of a trace already read (tr, clamped and scaled).
func poolOf(o options, path string, tr []bench.Arrival, capSeconds float64) (*pool, error) {
	if len(tr) < 2 {
		return nil, fmt.Errorf("trace %s: need at least 2 requests, got %d", path, len(tr))
	}
	p := &pool{Path: path, trace: tr}
	n := min(len(tr), 2000)
	for range 5 {
		p.meanN = n
		p.meanP, p.meanO = benchkit.MeanTokens(tr[:n])
		p.perSrv = benchkit.Capacity(o.Sim, p.meanP, p.meanO)
		p.capRPS = p.perSrv * float64(o.Backends)
		if !(p.capRPS > 0) {
			return nil, fmt.Errorf("trace %s: the simulator cannot serve the mean request (prompt %.0f, output %.0f)", path, p.meanP, p.meanO)
		}
		n = min(len(tr), max(int(math.Round(capSeconds*p.capRPS)), 2))
	}
	return p, nil
}

// plan takes the trace's requests from index from on, as many as k x
// capacity for d: exactly round(k x capacity x d) of them, time-scaled so
// they span d, the first due at 0. The mean rate is then exactly k x
// capacity and the trace's burstiness is kept. It returns the plan, the
// time scale and the index of the next unused request.
func (p *pool) plan(from int, k float64, d time.Duration) ([]bench.Arrival, float64, int, error) {
	n := max(int(math.Round(k*p.capRPS*d.Seconds())), 1)
	if from+n > len(p.trace) {
		return nil, 0, 0, fmt.Errorf("%s: %gx capacity for %s needs %d requests from #%d; the trace has %d (shorten --duration)",
			traceName(p.Path), k, d, n, from, len(p.trace))
	}
	slice, span, err := benchkit.Slice(p.trace, from, n)
	if err != nil {
		return nil, 0, 0, err
	}
	arr, ts := benchkit.Stretch(slice, span, d)
	return arr, ts, from + n, nil
}

// traceSource cites a trace for the report.
func traceSource(path string) string {
	switch p := strings.ToLower(path); {
	case strings.Contains(p, "azure"):
		return `Azure LLM inference trace, 2023; Patel et al., "Splitwise", ISCA 2024; CC-BY-4.0`
	case strings.Contains(p, "mooncake"):
		return `Mooncake trace; Qin et al., "Mooncake", FAST 2025; Apache-2.0`
	}
	return "a request trace"
}
