package benchkit

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
	"github.com/sluice-gw/sluice/internal/sim"
)

// SimConfig is the pool's engine the benchmarks start from: the
// simulator's documented defaults, spelled out so a report can state them.
func SimConfig() sim.Config {
	return sim.Config{Model: "sim-model", Slots: 16, KVTokens: 65536, MaxWaiting: 64,
		PrefillTokensPerSec: 20000, DecodeStepBase: 10 * time.Millisecond,
		DecodeStepPerSeq: 250 * time.Microsecond, BlockSize: 16, PrefixCacheBlocks: 4096}
}

// LoadTrace reads a trace (any bench.LoadTrace format) with its token
// counts clamped to maxIn / maxOut (in trace tokens; 0 = no clamp) and
// then multiplied by scale, so the simulators run fast.
func LoadTrace(path string, scale float64, maxIn, maxOut int) ([]bench.Arrival, error) {
	scaled := func(n int) int {
		if n <= 0 {
			return 0
		}
		return max(int(math.Round(float64(n)*scale)), 1)
	}
	return bench.LoadTrace(path, bench.TraceOptions{TokenScale: scale, MaxInputTokens: scaled(maxIn), MaxOutputTokens: scaled(maxOut)})
}

// MeanTokens is the mean prompt and output tokens of arr (each at least 1,
// as sent); 0, 0 when arr is empty.
func MeanTokens(arr []bench.Arrival) (prompt, output float64) {
	if len(arr) == 0 {
		return 0, 0
	}
	for _, a := range arr {
		prompt += float64(max(a.InputTokens, 1))
		output += float64(max(a.OutputTokens, 1))
	}
	n := float64(len(arr))
	return prompt / n, output / n
}

// Slice is the trace's requests from index from on, n of them, shifted so
// the first arrives at 0, and the time they span: up to the next request
// (so n over the span is exactly their rate), or one mean gap past the last
// at the trace's end.
func Slice(trace []bench.Arrival, from, n int) ([]bench.Arrival, time.Duration, error) {
	if from < 0 || n < 1 || from+n > len(trace) {
		return nil, 0, fmt.Errorf("trace: %d requests from #%d asked of %d", n, from, len(trace))
	}
	t0 := trace[from].At
	out := make([]bench.Arrival, n)
	for i, a := range trace[from : from+n] {
		a.At -= t0
		out[i] = a
	}
	var span time.Duration
	if from+n < len(trace) {
		span = trace[from+n].At - t0
	} else {
		last := out[n-1].At
		span = last + last/time.Duration(max(n-1, 1))
	}
	if span <= 0 {
		return nil, 0, errors.New("trace: the requests planned all arrive at once")
	}
	return out, span, nil
}

// Stretch time-scales a slice spanning span so it spans d instead,
// keeping its burstiness; it returns the arrivals and the time scale.
func Stretch(slice []bench.Arrival, span, d time.Duration) ([]bench.Arrival, float64) {
	ts := d.Seconds() / span.Seconds()
	return bench.Reshape(slice, bench.TraceOptions{TimeScale: ts}), ts
}

// Ended is when a request ended, from the start of its leg: planned
// arrival, the generator's lag, and its end-to-end time.
func Ended(r *bench.Record) time.Duration { return r.Planned + r.Lag + r.E2E }
