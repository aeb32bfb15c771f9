package health

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/endpoint"
	"github.com/sluice-gw/sluice/internal/telemetry"
)

// Checker probes backends and flips their probe state. Safe for concurrent
// use; normally one Run loop drives it. Its goroutines live only inside a
// ProbeOnce call, which waits for them, so nothing outlives Run.
type Checker struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	tallies map[*endpoint.Backend]*tally
}

// tally is the checker's view of one backend: its state and the current run
// of probe results that argue for changing it.
type tally struct {
	up     bool
	passes int // consecutive good probes while down
	fails  int // consecutive failed probes while up
	// discounted: consecutive timed-out probes passed over as the
	// gateway's stall since the last counted result (see maxDiscounted).
	discounted int
	// unsupported: an Auto plan found no probe endpoint; not probed again
	// while the backend is tracked.
	unsupported bool
}

// NewChecker builds a Checker. A nil client means http.DefaultClient; pass a
// client with its own Transport to keep probe connections apart from proxy
// traffic. A nil logger discards logs.
func NewChecker(cfg Config, client *http.Client, logger *slog.Logger) *Checker {
	if client == nil {
		client = http.DefaultClient
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Checker{
		cfg:     cfg.withDefaults(),
		client:  client,
		log:     logger,
		tallies: make(map[*endpoint.Backend]*tally),
	}
}

// Run probes every backend returned by backends at once and then every
// Interval, until ctx is done. backends is called each round so discovery
// and reloads are picked up. Run returns only after its probes have ended;
// probes cut short by ctx are not counted, so shutting down never marks a
// backend down.
func (c *Checker) Run(ctx context.Context, backends func() []*endpoint.Backend) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		c.ProbeOnce(ctx, backends())
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// ProbeOnce runs one round: it probes each listed backend once, at most
// Concurrency at a time, updates their probe state and returns when all
// probes are done. Backends no longer listed lose their counters.
func (c *Checker) ProbeOnce(ctx context.Context, backends []*endpoint.Backend) {
	var stalls stallTally
	c.probeAll(ctx, backends, &stalls)
	if n, worst := stalls.get(); n > 0 && ctx.Err() == nil {
		// Once a round, not once a probe: a stall hits every probe out.
		c.log.Warn("active health check: probes timed out while the gateway itself was stalled (CPU starvation, a pause); counted neither way",
			"probes", n, "late_by", worst.Round(time.Millisecond).String())
	}
}

// probeAll is ProbeOnce's round; it returns when every probe it started
// has ended.
func (c *Checker) probeAll(ctx context.Context, backends []*endpoint.Backend, stalls *stallTally) {
	list := c.track(backends)
	sem := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, b := range list {
		plan := c.planFor(b)
		if plan.Path == "" || c.unsupported(b) {
			c.release(b)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := c.cfg.Now()
			err := c.probe(ctx, b, plan.Path)
			if ctx.Err() != nil {
				return // aborted by our caller: says nothing about b
			}
			if late, stalled := c.stalled(start, err); stalled && c.discount(b) {
				stalls.add(late) // the gateway's lateness, not b's: no verdict
				if c.cfg.OnDiscount != nil {
					c.cfg.OnDiscount(b)
				}
				return
			}
			if plan.Auto && noSuchEndpoint(err) {
				c.giveUp(b, plan.Path, err)
				return
			}
			c.record(b, err)
		})
	}
}

func (c *Checker) planFor(b *endpoint.Backend) Plan {
	if c.cfg.PlanFor == nil {
		return Plan{Path: c.cfg.Path}
	}
	return c.cfg.PlanFor(b)
}

func (c *Checker) unsupported(b *endpoint.Backend) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tallies[b]
	return ok && t.unsupported
}

// release lets a backend that is not probed (any more) back up: a probe
// state nobody will update again must not hold it out for good.
func (c *Checker) release(b *endpoint.Backend) {
	c.mu.Lock()
	t, ok := c.tallies[b]
	down := ok && !t.up
	if down {
		t.up, t.passes, t.fails = true, 0, 0
		b.SetProbeHealthy(true)
	}
	c.mu.Unlock()
	if down {
		c.log.Info("backend up: no longer actively probed", "backend", b.Name())
		if c.cfg.OnChange != nil {
			c.cfg.OnChange(b, true)
		}
	}
}

// giveUp stops probing a backend whose engine was guessed and which has no
// probe endpoint: a server without /health is not a broken server.
func (c *Checker) giveUp(b *endpoint.Backend, path string, err error) {
	c.mu.Lock()
	t, ok := c.tallies[b]
	first := ok && !t.unsupported
	if ok {
		t.unsupported = true
	}
	c.mu.Unlock()
	if first {
		c.log.Info("active health check off for backend: it has no probe endpoint (set its engine to say what it is)",
			"backend", b.Name(), "path", path, "error", telemetry.NetCause(err, c.cfg.Timeout), "detail", telemetry.Clip(err.Error()))
	}
	c.release(b)
}

// track returns backends without duplicates, creating counters for new ones
// and dropping those of backends no longer listed.
func (c *Checker) track(backends []*endpoint.Backend) []*endpoint.Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Start from the backend's current state: a backend kept across a
	// reload by a new Checker must still earn its way back up.
	return endpoint.Track(c.tallies, backends, func(b *endpoint.Backend) *tally { return &tally{up: !probeDown(b)} })
}

// probeDown reads the backend's probe flag. Probe-down takes precedence over
// every time-based state, so the instant passed to State does not matter.
func probeDown(b *endpoint.Backend) bool {
	return b.State(time.Time{}) == endpoint.StateProbeDown
}

// record counts one probe result and applies a state change once the run of
// results is long enough.
func (c *Checker) record(b *endpoint.Backend, err error) {
	c.mu.Lock()
	t, ok := c.tallies[b]
	if !ok { // dropped by a concurrent round meanwhile
		c.mu.Unlock()
		return
	}
	changed := false
	t.discounted = 0
	if err == nil {
		t.fails = 0
		if !t.up {
			t.passes++
			if t.passes >= c.cfg.Passes {
				t.up, t.passes, changed = true, 0, true
			}
		}
	} else {
		t.passes = 0
		if t.up {
			t.fails++
			if t.fails >= c.cfg.Fails {
				t.up, t.fails, changed = false, 0, true
			}
		}
	}
	up := t.up
	if changed {
		// Under c.mu so two racing rounds cannot apply changes out of order.
		cause := ""
		if !up && err != nil {
			cause = telemetry.NetCause(err, c.cfg.Timeout)
		}
		b.SetProbeResult(up, cause)
	}
	c.mu.Unlock()

	if !changed {
		return
	}
	if up {
		c.log.Info("backend up: active health check passing", "backend", b.Name(), "passes", c.cfg.Passes)
	} else {
		c.log.Warn("backend down: active health check failing", "backend", b.Name(), "fails", c.cfg.Fails,
			"error", telemetry.NetCause(err, c.cfg.Timeout), "detail", telemetry.Clip(err.Error()))
	}
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(b, up)
	}
}
