package bench

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Arrival is one planned request.
type Arrival struct {
	// At is when the request is due, counted from the start of the run.
	At time.Duration `json:"at"`
	// InputTokens is the prompt length in words (the simulator counts one
	// token per whitespace-separated word). Values below 1 are sent as 1.
	InputTokens int `json:"input_tokens"`
	// OutputTokens is sent as max_tokens. Values below 1 are sent as 1.
	OutputTokens int `json:"output_tokens"`
	// HashIDs names the prompt's blocks of Config.BlockTokens words, as in
	// the Mooncake traces: equal ids produce identical words, so requests
	// sharing leading ids share a cacheable prefix. Nil means a prompt that
	// shares nothing with any other request.
	HashIDs []int `json:"hash_ids,omitempty"`
	// Tenant indexes Config.Tenants; it is ignored when there are none.
	Tenant int `json:"tenant,omitempty"`
}

// Constant plans arrivals evenly spaced at rate per second over d, each
// asking for in prompt tokens and out completion tokens.
func Constant(rate float64, d time.Duration, in, out int) []Arrival {
	if !(rate > 0) || d <= 0 {
		return nil
	}
	var arr []Arrival
	for i := 0; ; i++ {
		at := secondsToDuration(float64(i) / rate)
		if at >= d {
			return arr
		}
		arr = append(arr, Arrival{At: at, InputTokens: in, OutputTokens: out})
	}
}

// Poisson plans arrivals with exponential gaps of mean 1/rate over d. The
// same rng state gives the same plan.
func Poisson(rng *rand.Rand, rate float64, d time.Duration, in, out int) []Arrival {
	if !(rate > 0) || d <= 0 || rng == nil {
		return nil
	}
	var arr []Arrival
	t := 0.0
	for {
		t += rng.ExpFloat64() / rate
		at := secondsToDuration(t)
		if at >= d {
			return arr
		}
		arr = append(arr, Arrival{At: at, InputTokens: in, OutputTokens: out})
	}
}

// OnOff plans bursts: evenly spaced arrivals at rate per second for on, then
// silence for off, repeated over d. It models the flash crowds an overload
// gateway exists for; the mean rate is rate*on/(on+off).
func OnOff(rate float64, on, off, d time.Duration, in, out int) []Arrival {
	if !(rate > 0) || on <= 0 || d <= 0 {
		return nil
	}
	off = max(off, 0)
	var arr []Arrival
	for cycle := time.Duration(0); cycle < d; cycle += on + off {
		end := min(cycle+on, d)
		for i := 0; ; i++ {
			at := cycle + secondsToDuration(float64(i)/rate)
			if at >= end {
				break
			}
			arr = append(arr, Arrival{At: at, InputTokens: in, OutputTokens: out})
		}
	}
	return arr
}

// WithTenant sets every arrival's Tenant to t and returns arr.
func WithTenant(arr []Arrival, t int) []Arrival {
	for i := range arr {
		arr[i].Tenant = t
	}
	return arr
}

// Merge joins arrival streams into one ordered by At; arrivals due at the
// same instant keep the order of the streams given.
func Merge(streams ...[]Arrival) []Arrival {
	var out []Arrival
	for _, s := range streams {
		out = append(out, s...)
	}
	slices.SortStableFunc(out, func(a, b Arrival) int { return cmp.Compare(a.At, b.At) })
	return out
}

// AssignTenants spreads arrivals over tenants in proportion to their Share
// (all shares zero means equal shares) and returns arr. It uses smooth
// weighted round robin, nginx's algorithm, so it needs no randomness: with
// shares 2:1 the tenants go a, b, a, a, b, a, ... and any window of arrivals
// holds each tenant's share to within one request.
func AssignTenants(arr []Arrival, tenants []Tenant) []Arrival {
	if len(tenants) == 0 {
		return arr
	}
	w := make([]float64, len(tenants))
	total := 0.0
	for i, t := range tenants {
		w[i] = max(t.Share, 0)
		total += w[i]
	}
	if total == 0 {
		for i := range w {
			w[i] = 1
		}
		total = float64(len(w))
	}
	cur := make([]float64, len(w))
	for i := range arr {
		best := 0
		for j := range w {
			cur[j] += w[j]
			if cur[j] > cur[best] {
				best = j
			}
		}
		cur[best] -= total
		arr[i].Tenant = best
	}
	return arr
}

// TraceOptions reshapes a plan; LoadTrace applies them to a trace and
// Reshape to any plan. The zero value changes nothing.
type TraceOptions struct {
	// TimeScale multiplies every arrival time: 0.1 replays ten times faster
	// (bursts become shorter and denser). 0 means 1.
	TimeScale float64
	// RateMultiplier scales the number of arrivals while keeping the
	// timeline: 2 emits every arrival twice (the copy placed halfway to the
	// next original arrival), 0.5 keeps every second one. The choice is
	// deterministic (error diffusion, no randomness), so fractional values
	// thin or duplicate evenly. Unlike TimeScale it keeps the position and
	// length of every burst, which is what "twice the users" looks like.
	// 0 means 1.
	RateMultiplier float64
	// TokenScale multiplies input and output token counts (results are at
	// least 1). Pair it with Config.BlockTokens = 512*TokenScale so prefix
	// blocks shrink with the prompts. 0 means 1.
	TokenScale float64
	// MaxInputTokens and MaxOutputTokens clamp each request (0 = no clamp).
	// A clamped prompt is a truncated one: its leading hash-id blocks stay
	// intact, so shared prefixes still match.
	MaxInputTokens  int
	MaxOutputTokens int
	// Duration drops arrivals due at or after it, measured after scaling
	// (0 = no cap).
	Duration time.Duration
	// MaxRequests keeps only the first MaxRequests arrivals (0 = no cap).
	MaxRequests int
}

// Reshape applies o to arr and returns a new plan ordered by At; arr is not
// modified (HashIDs slices are shared, not copied). The order of operations
// is: token scale, clamps, time scale, rate multiplier, duration, count.
func Reshape(arr []Arrival, o TraceOptions) []Arrival {
	src := slices.Clone(arr)
	slices.SortStableFunc(src, func(a, b Arrival) int { return cmp.Compare(a.At, b.At) })
	ts, tok, mult := orOne(o.TimeScale), orOne(o.TokenScale), orOne(o.RateMultiplier)
	for i := range src {
		a := &src[i]
		if tok != 1 {
			a.InputTokens = int(math.Round(float64(a.InputTokens) * tok))
			a.OutputTokens = int(math.Round(float64(a.OutputTokens) * tok))
		}
		a.InputTokens, a.OutputTokens = max(a.InputTokens, 1), max(a.OutputTokens, 1)
		if o.MaxInputTokens > 0 {
			a.InputTokens = min(a.InputTokens, o.MaxInputTokens)
		}
		if o.MaxOutputTokens > 0 {
			a.OutputTokens = min(a.OutputTokens, o.MaxOutputTokens)
		}
		if ts != 1 {
			a.At = time.Duration(float64(a.At) * ts)
		}
	}
	out := make([]Arrival, 0, int(float64(len(src))*mult)+1)
	carry := 0.0
	for i, a := range src {
		carry += mult
		copies := int(carry)
		carry -= float64(copies)
		gap := time.Duration(0)
		if i+1 < len(src) {
			gap = src[i+1].At - a.At
		}
		for k := range copies {
			c := a
			c.At += gap * time.Duration(k) / time.Duration(copies)
			out = append(out, c)
		}
	}
	if o.Duration > 0 {
		n, _ := slices.BinarySearchFunc(out, o.Duration, func(a Arrival, d time.Duration) int { return cmp.Compare(a.At, d) })
		out = out[:n]
	}
	if o.MaxRequests > 0 && len(out) > o.MaxRequests {
		out = out[:o.MaxRequests]
	}
	return out
}

// BlockTokens is the prefix block size (Config.BlockTokens) that matches
// TokenScale: 512 scaled the same way as the prompts.
func (o TraceOptions) BlockTokens() int {
	return max(int(math.Round(DefaultBlockTokens*orOne(o.TokenScale))), 1)
}

func orOne(f float64) float64 {
	if !(f > 0) || math.IsInf(f, 0) {
		return 1
	}
	return f
}

func secondsToDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}
