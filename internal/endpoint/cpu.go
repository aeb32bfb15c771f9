package endpoint

import (
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// CPUSlots is how many CPU-side calls (vLLM's /tokenize and /detokenize)
// this gateway keeps outstanding on one backend at most, apart from its
// engine slots (Acquire, Limit).
//
// Such a call runs in the server's API process, on the tokenizer, and never
// enters the engine's batch, so the engine's limit (max_concurrency, the
// adaptive limit, the slots learned from /metrics) neither bounds nor is
// taken by it: counted there, a tokenizer flood took every slot and kept
// admitted generation out (docs/RELIABILITY.md, "Broken backends"). It
// still needs a bound, or a flood opens a connection per caller on one
// backend. A constant, not derived from the engine's limit, which says
// nothing about the API process: the tokenizer answers in milliseconds on
// one event loop, so more calls outstanding only queue in that process
// (the caller waits there instead of being told to come back), and 16 is
// more than it runs at once while well under the transport's idle
// connections per host, so the bound never churns connections.
const CPUSlots = 16

// AcquireCPU counts a CPU-side call as outstanding; it fails when CPUSlots
// are. Pair every successful AcquireCPU with ReleaseCPU (or AbandonCPU).
// It takes no engine slot: Inflight, Work and the limits do not see it.
func (b *Backend) AcquireCPU() bool {
	for {
		cur := b.cpuInflight.Load()
		if cur >= CPUSlots {
			return false
		}
		if b.cpuInflight.CompareAndSwap(cur, cur+1) {
			b.requests.Add(1)
			return true
		}
	}
}

// HasCPUCapacity reports whether AcquireCPU would currently succeed.
func (b *Backend) HasCPUCapacity() bool { return b.cpuInflight.Load() < CPUSlots }

// CPUInflight is the number of CPU-side calls outstanding on it.
func (b *Backend) CPUInflight() int64 { return b.cpuInflight.Load() }

// ReleaseCPU ends a CPU-side call. Its failures and push-backs count as
// any call's (a backend that cannot tokenize is broken, and its API
// process is the one serving generation's HTTP too); its latency teaches
// nothing: neither the adaptive limit (its milliseconds would read an
// engine at the limit as fast), nor the latency estimates routing,
// hedging and outlier ejection read as a time to first token.
func (b *Backend) ReleaseCPU(now time.Time, out outcome.Outcome, retryAfter time.Duration) {
	b.cpuInflight.Add(-1)
	if out == outcome.Busy || out == outcome.Failure {
		b.Observe(now, out, 0, retryAfter) // the health cases only: no latency learnt
		return
	}
	// A trial it was ends the ejection; a probation (ejection.go) is left
	// to an engine call's answer, the one the failures were about.
	if b.trialAt.Load() != 0 {
		b.mu.Lock()
		b.trialSucceededLocked()
		b.mu.Unlock()
		b.endTrial()
	}
}

// AbandonCPU ends a CPU-side call that never reached the backend.
func (b *Backend) AbandonCPU() {
	b.cpuInflight.Add(-1)
	b.endTrial()
}
