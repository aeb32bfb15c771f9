package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/sim"
)

// traceCSV is 15 minutes of the Azure LLM inference trace (conversation,
// 2023-11-16 18:30–18:45, CC-BY-4.0; trace/README.md has the attribution),
// embedded so the demo runs from a fresh clone: the rate climbs from about
// 4.6 to 8.4 requests/s in it, a real ramp.
//
//go:embed trace/azure_conv_1830_1845.csv
var traceCSV []byte

// TraceName names the embedded excerpt in the demo's header and docs.
const TraceName = "Azure LLM inference trace (conversation), 2023-11-16 18:30-18:45"

// traceSpan is the excerpt's length in trace time.
const traceSpan = 15 * time.Minute

// tokenScale shrinks the trace's prompts and answers (1020 and 129 tokens
// at the median) to a quarter, so a request takes a fraction of a second
// on the demo's small simulators and a replay of seconds holds thousands.
const tokenScale = 0.25

// plan is one replay of the excerpt, the same for every leg.
type plan struct {
	arrivals []bench.Arrival
	// compress is trace seconds per demo second: the 15 minutes replayed
	// in one leg.
	compress        float64
	meanIn, meanOut int
	perServerRPS    float64 // one simulator's capacity for the mean request
	traceRequests   int     // the excerpt's, before thinning or duplication
	meanRPS         float64 // offered load, averaged over the leg
}

// buildPlan compresses the excerpt into leg and scales its number of
// requests (bench.Reshape's rate multiplier: duplicates or thins evenly,
// keeping the shape) so that its mean rate is load x the capacity of
// backends simulators with cfg.
func buildPlan(leg time.Duration, load float64, backends int, cfg sim.Config) (plan, error) {
	raw, err := bench.ParseAzureCSV(bytes.NewReader(traceCSV))
	if err != nil {
		return plan{}, fmt.Errorf("demo: embedded trace: %w", err)
	}
	if len(raw) == 0 {
		return plan{}, fmt.Errorf("demo: embedded trace is empty")
	}
	scaled := bench.Reshape(raw, bench.TraceOptions{TokenScale: tokenScale})
	var in, out int
	for _, a := range scaled {
		in += a.InputTokens
		out += a.OutputTokens
	}
	p := plan{compress: traceSpan.Seconds() / leg.Seconds(), meanIn: in / len(scaled), meanOut: out / len(scaled),
		traceRequests: len(raw)}
	p.perServerRPS, _ = cfg.Capacity(p.meanIn, p.meanOut)
	if !(p.perServerRPS > 0) {
		return plan{}, fmt.Errorf("demo: the simulators cannot serve the trace's mean request (%d+%d tokens)", p.meanIn, p.meanOut)
	}
	target := load * p.perServerRPS * float64(backends)
	mult := target / (float64(len(raw)) / leg.Seconds())
	p.arrivals = bench.Reshape(raw, bench.TraceOptions{TimeScale: 1 / p.compress, RateMultiplier: mult,
		TokenScale: tokenScale, Duration: leg})
	p.meanRPS = float64(len(p.arrivals)) / leg.Seconds()
	return p, nil
}
