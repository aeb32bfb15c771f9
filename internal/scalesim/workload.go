package scalesim

import (
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sluice-gw/sluice/internal/sim"
)

// Workload is what is replayed: a trace's arrival rates per window, the
// windows before them (the forecaster's history), and the request lengths
// to draw from.
type Workload struct {
	// Warm are the trace's rates (requests/s) of the windows before the
	// replay; Rates those replayed. Window is their length in trace time.
	Warm, Rates []float64
	Window      time.Duration
	// Lengths are (prompt, output) token pairs; each request draws one.
	Lengths [][2]int
	// Compress: trace seconds per simulated second. Sample: the share of
	// the trace's requests replayed, so that the pool stays a few servers
	// big (each stands for 1/Sample of a real one's worth of demand).
	Compress, Sample float64
	Seed             uint64
}

// Validate reports the first unusable setting.
func (w *Workload) Validate() error {
	switch {
	case len(w.Rates) == 0:
		return errors.New("no windows to replay")
	case w.Window <= 0:
		return errors.New("window must be positive")
	case len(w.Lengths) == 0:
		return errors.New("no request lengths to draw from")
	case !(w.Compress >= 1 && w.Compress <= 3600):
		return errors.New("compression must be from 1 to 3600")
	case !(w.Sample > 0 && w.Sample <= 1e6):
		return errors.New("sample must be positive")
	}
	return nil
}

// MeanLengths are the mean prompt and output tokens of Lengths.
func (w *Workload) MeanLengths() (prompt, output float64) {
	for _, l := range w.Lengths {
		prompt += float64(l[0])
		output += float64(l[1])
	}
	n := float64(len(w.Lengths))
	return prompt / n, output / n
}

// Duration is the replay's length in simulated seconds.
func (w *Workload) Duration() float64 {
	return float64(len(w.Rates)) * w.Window.Seconds() / w.Compress
}

// arrivals draws the replayed requests: Poisson arrivals at each window's
// rate × Sample × Compress (flat within a window, as ServeGen's windows
// are), lengths drawn uniformly from Lengths, lengths fitted to the KV
// budget. Deterministic for a seed.
func (w *Workload) arrivals(cfg *sim.Config) []request {
	rng := rand.New(rand.NewPCG(w.Seed, 0x5ca1e))
	span := w.Window.Seconds() / w.Compress
	var out []request
	for i, r := range w.Rates {
		lambda := r * w.Sample * w.Compress
		if !(lambda > 0) {
			continue
		}
		start, end := float64(i)*span, float64(i+1)*span
		for t := start + rng.ExpFloat64()/lambda; t < end; t += rng.ExpFloat64() / lambda {
			l := w.Lengths[rng.IntN(len(w.Lengths))]
			p, o := max(l[0], 1), max(l[1], 1)
			if p+o > cfg.KVTokens {
				p = max(cfg.KVTokens-o, 1)
				o = min(o, cfg.KVTokens-p)
			}
			out = append(out, request{arrival: t, prompt: p, out: o})
		}
	}
	return out
}

// withDefaults fills sim.Config's zero fields as the simulator does.
func withDefaults(c sim.Config) sim.Config {
	if c.Slots <= 0 {
		c.Slots = sim.DefaultSlots
	}
	if c.KVTokens <= 0 {
		c.KVTokens = sim.DefaultKVTokens
	}
	if !(c.PrefillTokensPerSec > 0) {
		c.PrefillTokensPerSec = sim.DefaultPrefillTokensPerSec
	}
	if c.DecodeStepBase <= 0 {
		c.DecodeStepBase = sim.DefaultDecodeStepBase
	}
	if c.DecodeStepPerSeq <= 0 {
		c.DecodeStepPerSeq = sim.DefaultDecodeStepPerSeq
	}
	return c
}

// ServiceRate is one server's nominal throughput (requests per simulated
// second) for the workload's mean lengths: sim.Config.Capacity, exact in
// expectation while the batch is bound by slots, not KV.
func (w *Workload) ServiceRate(cfg sim.Config) float64 {
	p, o := w.MeanLengths()
	r, _ := withDefaults(cfg).Capacity(int(math.Round(p)), int(math.Round(o)))
	return r
}
