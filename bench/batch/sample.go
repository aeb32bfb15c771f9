package main

import (
	"context"
	"github.com/sluice-gw/sluice/bench/internal/benchkit"
	"net/http"
	"sync"
	"time"
)

// sample is one reading of the pool's and the gateway's /metrics, T seconds
// after the leg started.
type sample struct {
	T        float64 `json:"t_s"`
	Running  float64 `json:"running"`   // sequences decoding, pool total
	Waiting  float64 `json:"waiting"`   // in the backends' own queues
	Finished float64 `json:"finished"`  // requests the backends completed so far
	GWQueued float64 `json:"gw_queued"` // waiting in Sluice's queue (all classes)
	GWInUse  float64 `json:"gw_in_use"` // Sluice's granted slots
}

// sampler polls the simulators' and the gateway's /metrics until stopped.
type sampler struct {
	sims    []string
	gateway string
	client  *http.Client
	t0      time.Time

	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startSampler(ctx context.Context, sims []string, gateway string, t0 time.Time, every time.Duration) *sampler {
	s := &sampler{sims: sims, gateway: gateway, t0: t0, stop: make(chan struct{}),
		client: &http.Client{Timeout: 2 * every}}
	s.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			case <-tick.C:
				s.read(ctx)
			}
		}
	})
	return s
}

func (s *sampler) read(ctx context.Context) {
	var x sample
	for _, u := range s.sims {
		m := benchkit.Scrape(ctx, s.client, u+"/metrics")
		if m == nil {
			return // a missed sample, not a zero one
		}
		x.Running += benchkit.Sum(m, "vllm:num_requests_running")
		x.Waiting += benchkit.Sum(m, "vllm:num_requests_waiting")
		x.Finished += benchkit.Sum(m, "vllm:request_success_total")
	}
	g := benchkit.Scrape(ctx, s.client, s.gateway+"/metrics")
	if g == nil {
		return
	}
	x.GWQueued = benchkit.Sum(g, "sluice_queue_waiting")
	x.GWInUse = benchkit.Sum(g, "sluice_queue_in_use")
	x.T = time.Since(s.t0).Seconds()
	s.mu.Lock()
	s.samples = append(s.samples, x)
	s.mu.Unlock()
}

// finish stops sampling and returns the samples in time order.
func (s *sampler) finish() []sample {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// window averages the samples taken in [from, to).
func window(ss []sample, from, to float64) (mean sample, n int) {
	for _, x := range ss {
		if x.T < from || x.T >= to {
			continue
		}
		n++
		mean.Running += x.Running
		mean.Waiting += x.Waiting
		mean.GWQueued += x.GWQueued
		mean.GWInUse += x.GWInUse
	}
	if n > 0 {
		f := float64(n)
		mean.Running /= f
		mean.Waiting /= f
		mean.GWQueued /= f
		mean.GWInUse /= f
	}
	return mean, n
}

// finishedAt is the backends' completion count at t seconds, interpolated
// between the samples around it (the last sample's count past the end).
func finishedAt(ss []sample, t float64) float64 {
	prev := sample{}
	for _, x := range ss {
		if x.T >= t {
			if x.T == prev.T {
				return x.Finished
			}
			return prev.Finished + (x.Finished-prev.Finished)*(t-prev.T)/(x.T-prev.T)
		}
		prev = x
	}
	return prev.Finished
}

// sumWhere adds the series of name whose labels include key="value".
func sumWhere(ms []benchkit.Metric, name, key, value string) float64 {
	var t float64
	for _, m := range ms {
		if m.Name == name && benchkit.Label(m.Labels, key) == value {
			t += m.Value
		}
	}
	return t
}
