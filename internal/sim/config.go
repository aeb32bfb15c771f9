package sim

import (
	"math"
	"time"
)

// Faults are the chaos knobs. Each request draws its faults once, on arrival,
// from a PRNG derived from Config.Seed and the request's arrival number, so a
// run with the same seed and the same arrival order injects the same faults.
// The zero value injects nothing. Rates are clamped to [0, 1].
type Faults struct {
	ErrorRate      float64       // fraction of requests answered 500 (OpenAI error JSON)
	AddedLatency   time.Duration // added before the first byte (before the request is queued)
	HangRate       float64       // fraction of requests that never answer (until the client cancels)
	DisconnectRate float64       // fraction of responses cut mid-way: connection closed abruptly, no [DONE]
}

func (f Faults) normalized() Faults {
	f.ErrorRate = clamp01(f.ErrorRate)
	f.HangRate = clamp01(f.HangRate)
	f.DisconnectRate = clamp01(f.DisconnectRate)
	if f.AddedLatency < 0 {
		f.AddedLatency = 0
	}
	return f
}

func (f Faults) active() bool {
	return f.ErrorRate > 0 || f.AddedLatency > 0 || f.HangRate > 0 || f.DisconnectRate > 0
}

func clamp01(v float64) float64 {
	switch {
	case v > 1:
		return 1
	case v > 0:
		return v
	}
	return 0 // also maps NaN to 0
}

// Config describes one simulated inference server. The zero value is usable:
// every zero (or negative) field takes the default shown in its comment.
type Config struct {
	Model               string        // model id served (default "sim-model"); /v1/models lists it
	Slots               int           // max sequences decoded together (batch slots), default 16
	KVTokens            int           // KV-cache token budget: sum over running seqs of (prompt+generated) tokens, default 65536
	MaxWaiting          int           // bounded waiting queue; when full new requests get 503 "server busy", default 64
	PrefillTokensPerSec float64       // prefill speed, default 20000 tokens/s
	DecodeStepBase      time.Duration // one decode step with batch size 1, default 10ms
	DecodeStepPerSeq    time.Duration // extra step time per running sequence, default 250µs
	BlockSize           int           // prefix-cache block size in tokens, default 16
	PrefixCacheBlocks   int           // how many blocks the prefix cache remembers (LRU), default 4096
	DefaultMaxTokens    int           // output tokens when the request has no max_tokens, default 16
	Seed                int64         // seeds the deterministic text and fault draws
	Instant             bool          // no engine: answer at once with a fixed small completion
	Faults              Faults
	// HideSlots leaves sluice_sim_slots out of /metrics, so a gateway in
	// front reads no batch bound, as in front of vLLM (whose max_num_seqs
	// is in no metric): only the running and waiting gauges tell it.
	HideSlots bool
	// MetricsStyle is whose series /metrics writes: MetricsVLLM ("" or
	// "vllm", the default: vLLM's names and the simulator's slots) or
	// MetricsLlamaCpp ("llamacpp": llama.cpp server's requests_processing
	// and requests_deferred, and no slot count or KV series, as
	// llama-server --metrics reports them). The simulator-only counters
	// stay in both.
	MetricsStyle string
}

// The values of Config.MetricsStyle.
const (
	MetricsVLLM     = "vllm"
	MetricsLlamaCpp = "llamacpp"
)

// Defaults, named so the CLI can show them in --help.
const (
	DefaultModel               = "sim-model"
	DefaultSlots               = 16
	DefaultKVTokens            = 65536
	DefaultMaxWaiting          = 64
	DefaultPrefillTokensPerSec = 20000.0
	DefaultDecodeStepBase      = 10 * time.Millisecond
	DefaultDecodeStepPerSeq    = 250 * time.Microsecond
	DefaultBlockSize           = 16
	DefaultPrefixCacheBlocks   = 4096
	DefaultOutputTokens        = 16
)

func (c Config) withDefaults() Config {
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.Slots <= 0 {
		c.Slots = DefaultSlots
	}
	if c.KVTokens <= 0 {
		c.KVTokens = DefaultKVTokens
	}
	if c.MaxWaiting <= 0 {
		c.MaxWaiting = DefaultMaxWaiting
	}
	if !(c.PrefillTokensPerSec > 0) { // also catches NaN
		c.PrefillTokensPerSec = DefaultPrefillTokensPerSec
	}
	if c.DecodeStepBase <= 0 {
		c.DecodeStepBase = DefaultDecodeStepBase
	}
	if c.DecodeStepPerSeq <= 0 {
		c.DecodeStepPerSeq = DefaultDecodeStepPerSeq
	}
	if c.BlockSize <= 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.PrefixCacheBlocks <= 0 {
		c.PrefixCacheBlocks = DefaultPrefixCacheBlocks
	}
	if c.DefaultMaxTokens <= 0 {
		c.DefaultMaxTokens = DefaultOutputTokens
	}
	c.Faults = c.Faults.normalized()
	return c
}

// Capacity is the steady-state throughput of one server (after defaults) for a
// stream of identical requests with promptTokens in and outputTokens out, no
// prefix-cache hits and no faults:
//
//	B     = min(Slots, floor(KVTokens / (p + o)))        sequences decoded together
//	step  = DecodeStepBase + B × DecodeStepPerSeq          one decode step at batch B
//	cycle = o × step + B × p / PrefillTokensPerSec         time for B requests to pass through
//	reqPerSec    = B / cycle
//	tokensPerSec = reqPerSec × o                           generated (output) tokens per second
//
// The cycle counts every prefill in full because the engine stalls the whole
// batch while it prefills newly admitted requests. Cache hits only make the
// real number higher. It returns 0, 0 when one request cannot fit in the KV
// budget, and +Inf for Instant servers, which model no limit.
func (c Config) Capacity(promptTokens, outputTokens int) (reqPerSec, tokensPerSec float64) {
	c = c.withDefaults()
	if c.Instant {
		return math.Inf(1), math.Inf(1)
	}
	if promptTokens < 0 {
		promptTokens = 0
	}
	if outputTokens <= 0 {
		outputTokens = c.DefaultMaxTokens
	}
	per := promptTokens + outputTokens
	if per > c.KVTokens {
		return 0, 0
	}
	batch := min(c.Slots, c.KVTokens/per)
	step := c.DecodeStepBase + time.Duration(batch)*c.DecodeStepPerSeq
	cycle := float64(outputTokens)*step.Seconds() +
		float64(batch)*float64(promptTokens)/c.PrefillTokensPerSec
	reqPerSec = float64(batch) / cycle
	return reqPerSec, reqPerSec * float64(outputTokens)
}
