// Package scrape polls every backend's Prometheus metrics endpoint on an
// interval and stores what it reads (queue depth, KV-cache usage) on the
// backend with endpoint.Backend.SetLoad, or ObserveLoad when it also caps
// the backend's concurrency by what the backend can start. It is the only
// writer of that state; the least_load routing policy reads it.
//
// A failed scrape leaves the previous snapshot in place. Each snapshot
// carries an expiry (Config.StaleAfter), so a backend whose scrapes keep
// failing goes stale and policies stop trusting its numbers, while a single
// lost scrape does not throw away a good reading.
package scrape

import (
	"fmt"
	"time"
)

// Names lists, per quantity, the metric names that carry it, in order of
// preference: the first name present in a scrape is used and the others are
// ignored (vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc and some
// versions, like the simulator, expose both with the same value; adding them
// up would double it).
type Names struct {
	Running []string // requests in the running batch (summed over label sets)
	Waiting []string // requests queued on the backend (summed over label sets)
	KVCache []string // KV-cache usage, 0..1 (the largest over label sets)
	// BatchBound is the most requests the engine runs at once, as it
	// reports it (summed over label sets, as Running is: two engines
	// behind one URL run both batches). nil takes DefaultBatchBound; an
	// empty, non-nil list reads none.
	BatchBound []string
	// KVSize is the size of the engine's KV cache in tokens, as it
	// reports it (summed over label sets, as BatchBound). A name ending in
	// "_info" is an info series whose labels carry it: vLLM's
	// vllm:cache_config_info, num_gpu_blocks x block_size. nil takes
	// DefaultKVSize; an empty, non-nil list reads none.
	KVSize []string
}

// DefaultKVSize returns the KV-cache size names read unless configured:
// vLLM's cache_config_info (num_gpu_blocks x block_size), SGLang's
// sglang:max_total_num_tokens and the simulator's configured budget. With
// it the reported room counts the newcomer's own tokens against the free
// part of the cache (endpoint's kvroom.go); without it, sequences like
// the running ones.
func DefaultKVSize() []string {
	return []string{"vllm:cache_config_info", "sglang:max_total_num_tokens", "sluice_sim_kv_tokens"}
}

// DefaultBatchBound returns the batch-bound names read unless configured:
// SGLang's gauge of its max_running_requests (documented by some
// versions) and the simulator's configured slots. vLLM reports no such
// series (its max_num_seqs is in no metric), so a vLLM backend reports no
// bound, and its room is what its KV usage says the cache holds
// (endpoint.Backend.ReportedRoom).
func DefaultBatchBound() []string {
	return []string{"sglang:max_running_requests", "sluice_sim_slots"}
}

// VLLM returns vLLM's metric names. The simulator uses them too.
func VLLM() Names {
	return Names{
		Running: []string{"vllm:num_requests_running"},
		Waiting: []string{"vllm:num_requests_waiting"},
		KVCache: []string{"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"},
	}
}

// SGLang returns SGLang's metric names.
func SGLang() Names {
	return Names{
		Running: []string{"sglang:num_running_reqs"},
		Waiting: []string{"sglang:num_queue_reqs"},
		KVCache: []string{"sglang:token_usage"},
	}
}

// LlamaCpp returns llama.cpp's metric names (llama-server started with
// --metrics; tools/server/README.md, "GET /metrics"): requests_processing
// is the slots busy (the running batch), requests_deferred the requests
// waiting for a slot. kv_cache_usage_ratio (used KV cells over the
// context, 0..1) is in older versions only; newer ones report no KV
// usage, and none reports its slot count (--parallel), so the slots are
// learned from the queue, as vLLM's are.
func LlamaCpp() Names {
	return Names{
		Running: []string{"llamacpp:requests_processing"},
		Waiting: []string{"llamacpp:requests_deferred"},
		KVCache: []string{"llamacpp:kv_cache_usage_ratio"},
	}
}

// withLlamaCpp appends llama.cpp's names to n's as the last choice: no
// engine exports another's prefix, so a llama.cpp server is read under
// any preset (a pool mixing it with vLLM needs no setting), and an engine
// that exports both is read by the preset's own names.
func withLlamaCpp(n Names) Names {
	l := LlamaCpp()
	n.Running = append(n.Running, l.Running...)
	n.Waiting = append(n.Waiting, l.Waiting...)
	n.KVCache = append(n.KVCache, l.KVCache...)
	return n
}

// Preset returns the named set of metric names: "vllm", "sglang" or
// "llamacpp". vllm and sglang also read llama.cpp's names, after their
// own (withLlamaCpp).
func Preset(name string) (Names, error) {
	switch name {
	case "vllm":
		return withLlamaCpp(VLLM()), nil
	case "sglang":
		return withLlamaCpp(SGLang()), nil
	case "llamacpp":
		return LlamaCpp(), nil
	}
	return Names{}, fmt.Errorf("unknown metrics preset %q (valid: vllm, sglang, llamacpp)", name)
}

// Config configures a Scraper. The zero value of every field means its
// default, so Config{} scrapes GET /metrics with vLLM names every second.
type Config struct {
	// Interval between the starts of two scrape rounds. Default 1s.
	Interval time.Duration
	// Timeout bounds one scrape, connect to end of body. Default Interval:
	// a reading older than one interval is no better than the next one.
	Timeout time.Duration
	// Path is appended to the backend's base URL, keeping the base URL's own
	// path prefix. It may carry a query string. Default "/metrics".
	Path string
	// Names are the metric names read. Each empty list takes the vllm
	// preset's (vLLM's, then llama.cpp's), so Names{} scrapes vLLM, the
	// simulator and llama.cpp.
	Names Names
	// StaleAfter is how long a snapshot is trusted after it was taken.
	// Default 3 x Interval: one or two lost scrapes are tolerated, a
	// backend whose /metrics is gone for longer is treated as saturated.
	StaleAfter time.Duration
	// Concurrency bounds the scrapes in flight during one round. Default 8.
	Concurrency int
	// MaxBody bounds the metrics body read; a larger body fails the scrape.
	// Default 4 MiB (vLLM's is around 100 KiB).
	MaxBody int64
	// Now is the clock stamped on snapshots. Default time.Now.
	Now func() time.Time
	// CapConcurrency also caps each backend's concurrency limit by what
	// its reading says it can start (endpoint.Backend.ObserveLoad), so no
	// backend is sent more than it runs plus what it can still start.
	CapConcurrency bool
}

// StaleAfterIntervals is StaleAfter's default in intervals (three
// scrapes missed), as docs/CONFIG.md prints load_metrics.stale_after.
const StaleAfterIntervals = 3

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = c.Interval
	}
	if c.Path == "" {
		c.Path = "/metrics"
	}
	def := withLlamaCpp(VLLM())
	if len(c.Names.Running) == 0 {
		c.Names.Running = def.Running
	}
	if len(c.Names.Waiting) == 0 {
		c.Names.Waiting = def.Waiting
	}
	if len(c.Names.KVCache) == 0 {
		c.Names.KVCache = def.KVCache
	}
	if c.Names.BatchBound == nil {
		c.Names.BatchBound = DefaultBatchBound()
	}
	if c.Names.KVSize == nil {
		c.Names.KVSize = DefaultKVSize()
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = StaleAfterIntervals * c.Interval
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 4 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
