package admission

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-gw/sluice/internal/outcome"
	"github.com/sluice-gw/sluice/internal/sim"
)

// simPhase is one stretch of the convergence run against one simulator.
type simPhase struct {
	name  string
	slots int
	until uint64 // run until the limit has closed this many windows
	first int    // index of the phase's first window in the trace
}

// TestAdaptiveLimitFindsSimulatorKnee drives a real simulator over HTTP with
// a closed-loop load (more clients than the backend can take) gated by an
// AdaptiveLimit through a Queue, as the gateway will. The simulator's knee is
// its slot count: below it throughput grows with concurrency, above it
// requests only wait in its FIFO queue. Halfway, the backend is swapped for
// one with half the slots (half the pool lost); the limit must come down to
// the new knee.
//
// The simulator: decode step 4ms + 100µs per running sequence, 8 output
// tokens per request. The run is a testing/synctest bubble with HTTP over
// in-memory pipes: the simulator's step timers, the limiter's windows and
// every latency are on the bubble's clock, which moves only when every
// goroutine waits, so HTTP and scheduling take no time and a loaded machine
// changes nothing (it used to: the simulator ran on wall-clock timers over
// loopback, and CPU starvation read as backend latency). The run is
// deterministic: the limit settles at about 1.6× the knee (the default
// Tolerance of 1.5), and throughput is about 90% of the Capacity formula.
// Asserted: within [knee, 2×knee] no later than 25 windows into each phase
// and to its end, and throughput over the last 15 windows of each phase at
// least 80% of the Capacity formula (a limit below the knee starves the
// batch).
func TestAdaptiveLimitFindsSimulatorKnee(t *testing.T) {
	synctest.Test(t, adaptiveLimitFindsSimulatorKnee)
}

func adaptiveLimitFindsSimulatorKnee(t *testing.T) {
	cfg := sim.Config{Slots: 8, MaxWaiting: 16, DecodeStepBase: 4 * time.Millisecond,
		DecodeStepPerSeq: 100 * time.Microsecond, Seed: 1}
	nets := make([]*pipeNet, 2)
	for i, slots := range []int{8, 4} {
		c := cfg
		c.Slots = slots
		s := sim.New(c)
		nets[i] = servePipe(s)
		t.Cleanup(nets[i].Shutdown)
		t.Cleanup(s.Close)
	}
	phases := []*simPhase{{name: "8 slots", slots: 8, until: 30}, {name: "4 slots", slots: 4, until: 60}}

	lim := NewAdaptiveLimit(LimitConfig{Window: 100 * time.Millisecond, MinSamples: 8, Tolerance: 1.5,
		BaselineWindows: 40})
	q := NewQueue(QueueConfig{Fair: true}, lim.Limit, time.Now)
	// One transport per simulator, each dialling its own in-memory server.
	clients := make([]*http.Client, len(nets))
	for i, n := range nets {
		tr := transport()
		tr.DialContext = n.Dial
		t.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: tr}
	}

	var (
		mu       sync.Mutex
		est      []float64
		at       []time.Time
		done     []int64 // successes at each window's close
		served   atomic.Int64
		windows  uint64
		current  atomic.Int32
		inflight atomic.Int64
		busy     atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// onSample records every closed window and moves to the next phase.
	onSample := func() {
		mu.Lock()
		defer mu.Unlock()
		s := lim.Stats()
		for windows < s.Windows {
			windows++
			est = append(est, s.Estimate)
			at = append(at, time.Now())
			done = append(done, served.Load())
			p := phases[current.Load()]
			if windows < p.until {
				continue
			}
			if int(current.Load()) == len(phases)-1 {
				cancel()
				return
			}
			phases[current.Add(1)].first = len(est)
		}
	}
	const body = `{"model":"sim-model","prompt":"hello","max_tokens":8}`
	var wg sync.WaitGroup
	for range 32 { // clients: four times the largest knee
		wg.Go(func() {
			for ctx.Err() == nil {
				tk, err := q.Acquire(ctx, Request{Tenant: "load", Cost: 10})
				if err != nil {
					return // cancelled: the run is over
				}
				n := inflight.Add(1)
				start := time.Now()
				sim := current.Load()
				out := post(ctx, clients[sim], "http://sim/v1/completions", body)
				lat := time.Since(start)
				inflight.Add(-1)
				if out == outcome.Busy {
					busy.Add(1)
				}
				if out == outcome.Success {
					served.Add(1)
				}
				lim.Observe(time.Now(), lat, int(n), out)
				tk.Release()
				onSample()
			}
		})
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for i, p := range phases {
		last := len(est)
		if i+1 < len(phases) {
			last = phases[i+1].first
		}
		knee := float64(p.slots)
		settled := (&trace{est: est}).settledAfter(knee, 2*knee, p.first, last)
		final := est[last-1]
		c := cfg
		c.Slots = p.slots
		best, _ := c.Capacity(1, 8)
		from, to := last-16, last-1
		got := float64(done[to]-done[from]) / at[to].Sub(at[from]).Seconds()
		t.Logf("%s: %d windows, settled in [%.0f, %.0f] after %d; final limit %.1f (%.2f× the knee); %.0f req/s = %.0f%% of capacity %.0f req/s",
			p.name, last-p.first, knee, 2*knee, settled, final, final/knee, got, 100*got/best, best)
		t.Logf("%s trace: %.1f", p.name, est[p.first:last])
		if settled > 25 {
			t.Errorf("%s: took %d windows to settle within [knee, 2×knee]; trace %.1f", p.name, settled, est[p.first:last])
		}
		if got < 0.8*best {
			t.Errorf("%s: throughput %.0f req/s below 80%% of the simulator's capacity %.0f", p.name, got, best)
		}
	}
	t.Logf("busy answers from the simulator: %d", busy.Load())
}

func transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return tr
}

// post sends one completion and classifies the answer for the limiter.
func post(ctx context.Context, c *http.Client, url, body string) outcome.Outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return outcome.Failure
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return outcome.Failure
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return outcome.Busy
	case resp.StatusCode >= 500:
		return outcome.Failure
	}
	return outcome.Success
}
