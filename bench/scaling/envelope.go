package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/bench"
)

// phase is one stretch of the load envelope: the load moves linearly from
// From to To (multiples of the pool's capacity) over D.
type phase struct {
	D        time.Duration
	From, To float64
}

// parseEnvelope reads "30s:0.5,30s:0.5>1.6,20s:1.6,30s:0.3": each phase a
// duration and a load, or a ramp from>to.
func parseEnvelope(s string) ([]phase, error) {
	var out []phase
	for _, part := range strings.Split(s, ",") {
		d, load, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("--envelope: %q: want DURATION:LOAD or DURATION:FROM>TO", part)
		}
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("--envelope: %q: a positive duration such as 30s", d)
		}
		from, to, ramp := strings.Cut(load, ">")
		f, err1 := strconv.ParseFloat(from, 64)
		t := f
		var err2 error
		if ramp {
			t, err2 = strconv.ParseFloat(to, 64)
		}
		if err1 != nil || err2 != nil || f < 0 || t < 0 || f+t == 0 {
			return nil, fmt.Errorf("--envelope: %q: loads are non-negative multiples of capacity, not both 0", load)
		}
		out = append(out, phase{D: dur, From: f, To: t})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--envelope: no phase")
	}
	return out, nil
}

// span is the envelope's length.
func span(env []phase) time.Duration {
	var d time.Duration
	for _, p := range env {
		d += p.D
	}
	return d
}

// loadAt is the envelope's load at t.
func loadAt(env []phase, t time.Duration) float64 {
	for _, p := range env {
		if t < p.D {
			return p.From + (p.To-p.From)*t.Seconds()/p.D.Seconds()
		}
		t -= p.D
	}
	return env[len(env)-1].To
}

// cumulative is ∫ load over [0, t], in capacity-seconds.
func cumulative(env []phase, t time.Duration) float64 {
	var sum float64
	for _, p := range env {
		d := min(t, p.D).Seconds()
		if d <= 0 {
			break
		}
		sum += p.From*d + (p.To-p.From)*d*d/(2*p.D.Seconds())
		t -= p.D
	}
	return sum
}

// warp puts a trace slice under the envelope: request i of n, due at a_i
// within the slice's span, is sent when the envelope's cumulative load
// reaches the same share of its total as a_i is of the span. The trace's
// order, token counts and its burstiness relative to its own mean are
// kept; its mean rate follows the envelope.
func warp(slice []bench.Arrival, sliceSpan time.Duration, env []phase) []bench.Arrival {
	total := span(env)
	whole := cumulative(env, total)
	out := make([]bench.Arrival, len(slice))
	for i, a := range slice {
		target := whole * a.At.Seconds() / sliceSpan.Seconds()
		lo, hi := time.Duration(0), total
		for hi-lo > time.Millisecond {
			mid := lo + (hi-lo)/2
			if cumulative(env, mid) < target {
				lo = mid
			} else {
				hi = mid
			}
		}
		a.At = hi
		out[i] = a
	}
	return out
}
