package benchkit

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"
)

// Sample is one reading of a leg's simulators and gateways, T seconds after
// the sampler started. Pool figures are summed over the simulators, gateway
// figures over the gateways (0 without one).
type Sample struct {
	T        float64 `json:"t_s"`
	Running  float64 `json:"running"`  // vllm:num_requests_running: sequences decoding
	Waiting  float64 `json:"waiting"`  // vllm:num_requests_waiting: in the backends' own queues
	Finished float64 `json:"finished"` // vllm:request_success_total: completed so far
	// Queue is each simulator's running+waiting, in the order of the URLs.
	Queue      []float64 `json:"queue,omitempty"`
	GWQueued   float64   `json:"gw_queued"`   // sluice_queue_waiting (all models and classes)
	GWCapacity float64   `json:"gw_capacity"` // sluice_queue_capacity: the slots the limits allow
	GWInUse    float64   `json:"gw_in_use"`   // sluice_queue_in_use: granted slots
	// GWIdleFree is the slots free (capacity - in use) at gateways whose
	// queue is empty: with another gateway's queue non-empty, room one
	// replica holds while the other's requests wait.
	GWIdleFree float64 `json:"gw_idle_free"`
	// GWHeld is sluice_queue_held_slots: free slots held for Retry-After
	// appointments due now (0 from a gateway without the gauge).
	GWHeld float64 `json:"gw_held"`
	// DelayTarget is sluice_queue_delay_target_seconds of the interactive
	// class, the largest over the gateways; NaN when none exports it (JSON
	// cannot say NaN, hence not written).
	DelayTarget float64 `json:"-"`
}

// ReadSample builds the sample at t from one scrape of each simulator and
// each gateway; ok is false when any scrape failed (nil): a missed sample,
// not a zero one.
func ReadSample(t float64, sims, gateways [][]Metric) (s Sample, ok bool) {
	s = Sample{T: t, DelayTarget: math.NaN(), Queue: make([]float64, len(sims))}
	for i, m := range sims {
		if m == nil {
			return Sample{}, false
		}
		// A simulator writes vLLM's gauges or llama.cpp's (MetricsStyle),
		// never both.
		run := Sum(m, "vllm:num_requests_running") + Sum(m, "llamacpp:requests_processing")
		wait := Sum(m, "vllm:num_requests_waiting") + Sum(m, "llamacpp:requests_deferred")
		s.Running += run
		s.Waiting += wait
		s.Finished += Sum(m, "vllm:request_success_total")
		s.Queue[i] = run + wait
	}
	for _, m := range gateways {
		if m == nil {
			return Sample{}, false
		}
		queued, capacity, inUse := Sum(m, "sluice_queue_waiting"), Sum(m, "sluice_queue_capacity"), Sum(m, "sluice_queue_in_use")
		s.GWQueued += queued
		s.GWCapacity += capacity
		s.GWInUse += inUse
		s.GWHeld += Sum(m, "sluice_queue_held_slots")
		if queued == 0 && capacity < unlimitedCapacity {
			s.GWIdleFree += max(capacity-inUse, 0)
		}
		if v, ok := DelayTarget(m); ok && !(v <= s.DelayTarget) {
			s.DelayTarget = v // the first value, or a larger one (NaN compares false)
		}
	}
	return s, true
}

// unlimitedCapacity is where a gateway's sluice_queue_capacity stops
// being slots: a pool with an unlimited backend reports 1<<30.
const unlimitedCapacity = 1 << 29

// DelayTarget reads sluice_queue_delay_target_seconds for the interactive
// class, which the benchmarks' own requests are in; the gauge is per class
// (and per model: the largest is taken). A gateway exporting it without a
// class label has its largest series taken.
func DelayTarget(ms []Metric) (float64, bool) {
	best, found, interactive := 0.0, false, false
	for _, m := range ms {
		if m.Name != "sluice_queue_delay_target_seconds" {
			continue
		}
		isInteractive := Label(m.Labels, "class") == "interactive"
		switch {
		case isInteractive && !interactive: // the first interactive series beats any other
			best, interactive = m.Value, true
		case isInteractive == interactive && (!found || m.Value > best):
			best = m.Value
		}
		found = true
	}
	return best, found
}

// SamplerConfig says what a Sampler reads and how often.
type SamplerConfig struct {
	Sims     []string // simulator base URLs
	Gateways []string // gateway admin base URLs (where /metrics is)
	Every    time.Duration
	// Until stops the sampling by itself this long after the start (a
	// leg's arrivals); 0 = only Finish stops it.
	Until time.Duration
	// Tick and Now replace the ticker and the clock; nil = real ones.
	Tick <-chan time.Time
	Now  func() time.Time
}

// Sampler scrapes the simulators' and the gateways' /metrics while a leg
// runs. All targets of one sample are scraped concurrently, so a sample is
// one moment even when a gateway answers slowly under load.
type Sampler struct {
	cfg     SamplerConfig
	ctx     context.Context
	client  *http.Client
	start   time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	samples []Sample // written by the sampling goroutine only; read after wg.Wait
}

// StartSampler starts sampling; Finish stops it (the caller owns it).
func StartSampler(ctx context.Context, cfg SamplerConfig) *Sampler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// A scrape slower than this is a missed sample, not a stuck leg.
	s := &Sampler{cfg: cfg, ctx: ctx, client: &http.Client{Timeout: time.Second}, start: cfg.Now(), stop: make(chan struct{})}
	s.wg.Go(func() {
		tick := cfg.Tick
		if tick == nil {
			t := time.NewTicker(cfg.Every)
			defer t.Stop()
			tick = t.C
		}
		var end <-chan time.Time
		if cfg.Until > 0 {
			t := time.NewTimer(cfg.Until)
			defer t.Stop()
			end = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-end:
				return
			case <-tick:
				if smp, ok := s.scrape(ctx); ok {
					s.samples = append(s.samples, smp)
				}
			}
		}
	})
	return s
}

// scrape reads every target once.
func (s *Sampler) scrape(ctx context.Context) (Sample, bool) {
	return s.scrapeWith(ctx, s.client)
}

// patientScrape bounds the one scrape Finish makes when every tick's
// scrape missed.
const patientScrape = 10 * time.Second

func (s *Sampler) scrapeWith(ctx context.Context, client *http.Client) (Sample, bool) {
	at := s.cfg.Now().Sub(s.start).Seconds()
	urls := append(append([]string(nil), s.cfg.Sims...), s.cfg.Gateways...)
	got := make([][]Metric, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { got[i] = Scrape(ctx, client, u+"/metrics") })
	}
	wg.Wait()
	return ReadSample(at, got[:len(s.cfg.Sims)], got[len(s.cfg.Sims):])
}

// Finish stops sampling and returns the samples in time order. When
// every tick's scrape missed (a machine so starved that no /metrics
// answered within a second, e.g. a race-instrumented run beside other
// work), the state at Finish is read once with a patient client, so a
// summary rests on one sample rather than none; it is dated when taken.
func (s *Sampler) Finish() []Sample {
	close(s.stop)
	s.wg.Wait()
	if len(s.samples) == 0 && s.ctx.Err() == nil {
		if smp, ok := s.scrapeWith(s.ctx, &http.Client{Timeout: patientScrape}); ok {
			s.samples = append(s.samples, smp)
		}
	}
	return s.samples
}

// WeightedMean is the time-weighted mean of f over the samples keep
// accepts (nil: all): each sample stands for the time since the previous
// one. share is the kept samples' share of the time; both are 0 when none
// is kept.
func WeightedMean(ss []Sample, f func(Sample) float64, keep func(Sample) bool) (mean, share float64) {
	var sum, kept, total, prev float64
	for _, s := range ss {
		w := s.T - prev
		prev = s.T
		total += w
		if keep == nil || keep(s) {
			kept += w
			sum += w * f(s)
		}
	}
	if kept == 0 {
		return 0, 0
	}
	return sum / kept, kept / total
}

// Window is the plain mean of the samples taken in [from, to) seconds,
// field by field (Queue element by element; DelayTarget is not averaged),
// and how many there were.
func Window(ss []Sample, from, to float64) (mean Sample, n int) {
	for _, x := range ss {
		if x.T < from || x.T >= to {
			continue
		}
		n++
		mean.Running += x.Running
		mean.Waiting += x.Waiting
		mean.Finished += x.Finished
		mean.GWQueued += x.GWQueued
		mean.GWCapacity += x.GWCapacity
		mean.GWInUse += x.GWInUse
		for len(mean.Queue) < len(x.Queue) {
			mean.Queue = append(mean.Queue, 0)
		}
		for i, q := range x.Queue {
			mean.Queue[i] += q
		}
	}
	if n == 0 {
		return mean, 0
	}
	f := float64(n)
	mean.Running /= f
	mean.Waiting /= f
	mean.Finished /= f
	mean.GWQueued /= f
	mean.GWCapacity /= f
	mean.GWInUse /= f
	for i := range mean.Queue {
		mean.Queue[i] /= f
	}
	return mean, n
}

// PerSecond averages f over each whole second of the samples: a compact
// trajectory (value i covers second i to i+1; a second without a sample
// repeats the last value).
func PerSecond(ss []Sample, f func(Sample) float64) []float64 {
	var out, n []float64
	for _, s := range ss {
		i := int(s.T)
		for len(out) <= i {
			out, n = append(out, 0), append(n, 0)
		}
		out[i] += f(s)
		n[i]++
	}
	for i := range out {
		if n[i] > 0 {
			out[i] /= n[i]
		} else if i > 0 {
			out[i] = out[i-1]
		}
	}
	return out
}

// ValueAt is f at t seconds, interpolated between the samples around it
// (from 0 at time 0 before the first; the last sample's value past the
// end). For counters such as Finished.
func ValueAt(ss []Sample, t float64, f func(Sample) float64) float64 {
	var prevT, prevV float64
	for _, x := range ss {
		if x.T >= t {
			if x.T == prevT {
				return f(x)
			}
			return prevV + (f(x)-prevV)*(t-prevT)/(x.T-prevT)
		}
		prevT, prevV = x.T, f(x)
	}
	return prevV
}

// MaxDelayTarget is the largest DelayTarget of the samples; false when no
// gateway exported one.
func MaxDelayTarget(ss []Sample) (float64, bool) {
	target := math.NaN()
	for _, s := range ss {
		if !math.IsNaN(s.DelayTarget) && (math.IsNaN(target) || s.DelayTarget > target) {
			target = s.DelayTarget
		}
	}
	return target, !math.IsNaN(target)
}
