package main

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/bench/internal/benchkit"
)

// sampleEvery is how often a leg's simulators and gateways are scraped.
const sampleEvery = 100 * time.Millisecond

// sample is one scrape of the pool and its gateways.
type sample struct {
	At      time.Duration // since the sampler started
	Running float64       // vllm:num_requests_running, summed over the pool
	Waiting float64       // vllm:num_requests_waiting, summed over the pool
	// Gateway figures, summed over the gateways (0 without one).
	Queued   float64 // sluice_queue_waiting (all models and classes)
	Capacity float64 // sluice_queue_capacity: the slots the limits allow
	// DelayTarget is sluice_queue_delay_target_seconds, the largest over
	// the gateways; NaN when no gateway exports it.
	DelayTarget float64
}

// sampler scrapes the simulators' and the gateways' /metrics while a leg's
// arrivals run. All targets of one sample are scraped concurrently, so a
// sample is one moment even when a gateway answers slowly under load.
type sampler struct {
	sims, gateways []string // gateways: their admin base URLs, where /metrics is
	client         *http.Client
	start          time.Time
	stop           chan struct{}
	wg             sync.WaitGroup
	samples        []sample // written by the sampling goroutine only; read after wg.Wait
}

func startSampler(ctx context.Context, sims, gateways []string, until time.Duration) *sampler {
	s := &sampler{sims: sims, gateways: gateways, start: time.Now(), stop: make(chan struct{}),
		client: newScrapeClient()}
	s.wg.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		end := time.After(until)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-end:
				return
			case <-tick.C:
				if smp, ok := s.scrape(ctx); ok {
					s.samples = append(s.samples, smp)
				}
			}
		}
	})
	return s
}

// scrape reads every target once; ok is false when any read failed (a
// missed sample: its time goes to the next one).
func (s *sampler) scrape(ctx context.Context) (sample, bool) {
	at := time.Since(s.start)
	urls := append(append([]string(nil), s.sims...), s.gateways...)
	got := make([][]benchkit.Metric, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { got[i] = benchkit.Scrape(ctx, s.client, u+"/metrics") })
	}
	wg.Wait()
	smp := sample{At: at, DelayTarget: math.NaN()}
	for i, m := range got {
		if m == nil {
			return sample{}, false
		}
		if i < len(s.sims) {
			smp.Running += benchkit.Sum(m, "vllm:num_requests_running")
			smp.Waiting += benchkit.Sum(m, "vllm:num_requests_waiting")
			continue
		}
		smp.Queued += benchkit.Sum(m, "sluice_queue_waiting")
		smp.Capacity += benchkit.Sum(m, "sluice_queue_capacity")
		if v, ok := delayTarget(m); ok && !(v <= smp.DelayTarget) {
			smp.DelayTarget = v // the first value, or a larger one (NaN compares false)
		}
	}
	return smp, true
}

// delayTarget reads sluice_queue_delay_target_seconds for the interactive
// class, which every request of the harness is in; the gauge is per class
// (and per model: the largest is taken). A gateway exporting it without a
// class label has the largest series taken.
func delayTarget(ms []benchkit.Metric) (float64, bool) {
	best, found, interactive := 0.0, false, false
	for _, m := range ms {
		if m.Name != "sluice_queue_delay_target_seconds" {
			continue
		}
		isInteractive := benchkit.Label(m.Labels, "class") == "interactive"
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

// finish stops sampling and returns the samples.
func (s *sampler) finish() []sample {
	close(s.stop)
	s.wg.Wait()
	return s.samples
}

// weightedMean is the time-weighted mean of f over the samples keep
// accepts: each sample stands for the time since the previous one (zero
// when none is kept). share is the kept samples' share of the time.
func weightedMean(ss []sample, f func(sample) float64, keep func(sample) bool) (mean, share float64) {
	var sum, kept, total float64
	var prev time.Duration
	for _, s := range ss {
		w := (s.At - prev).Seconds()
		prev = s.At
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

// perSecond averages f over each whole second of the samples: a compact
// trajectory (value i covers second i to i+1).
func perSecond(ss []sample, f func(sample) float64) []float64 {
	var out, n []float64
	for _, s := range ss {
		i := int(s.At / time.Second)
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
			out[i] = out[i-1] // a second without a sample repeats the last value
		}
	}
	return out
}

// newScrapeClient reads /metrics; a scrape slower than its timeout is a
// missed sample, not a stuck leg.
func newScrapeClient() *http.Client { return &http.Client{Timeout: time.Second} }
