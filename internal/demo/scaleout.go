package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/scaling"
)

// The scale-out leg: the gateway finds its backends in a watched targets
// file (discovery type "file"), and an actuator does what a KEDA scaler on
// sluice_model_desired_backends does in a cluster: it polls the admin
// listener's /scaling, starts simulators when the signal asks for more than
// the pool has, and lists each one in the targets file only after its cold
// start, as a server becomes ready once its model is loaded.

// scaleOutConfig is the scale-out leg's gateway: GatewayConfig's defaults
// with the backends taken from the targets file, the forecaster on, and
// the settings that are durations of the trace (a backend's start-up time,
// slow start) divided by the replay's compression. The forecaster counts
// 1-second intervals: a replay of seconds gives it no daily profile to
// learn, so its p90 here is the recent level and its error band.
func scaleOutConfig(targets string, compress float64, cold time.Duration) config.Config {
	cfg := GatewayConfig(nil)
	m := &cfg.Models[0]
	m.Backends = nil
	m.Discovery = []config.Discovery{{Type: "file", Path: targets}}
	slow := config.Duration(time.Duration(float64(config.DefaultSlowStart) / compress))
	m.SlowStart = &slow
	cfg.Forecast.Enabled = true
	cfg.Forecast.Interval = config.Duration(time.Second)
	cfg.Forecast.MaxHorizon = config.Duration(time.Minute)
	cfg.Forecast.Snapshot = "off"
	cfg.Scaling.Lead = config.Duration(cold.Round(time.Second))
	return cfg
}

// writeTargets replaces the targets file atomically (write, rename), so
// the watcher never reads half a file.
func writeTargets(path string, urls []string) error {
	b, err := json.Marshal([]struct {
		Targets []string `json:"targets"`
	}{{Targets: urls}})
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".targets.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("demo: targets file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("demo: targets file: %w", err)
	}
	return nil
}

// ScaleEvent is one decision to add servers, times from the leg's start.
type ScaleEvent struct {
	Asked   time.Duration // since the leg started: the signal first exceeded the pool
	Serving time.Duration // the servers started then were listed as ready
	From    int           // servers before
	To      int           // servers after
	// Measured and Forecast are the signal's arrival rate now and the
	// forecast p90 at now + lead (requests/s; Forecast < 0: none yet), so
	// the table's reader can see which of the two asked.
	Measured, Forecast float64
}

// actuator grows the pool to the gateway's desired backends, never past
// max, and never shrinks it (scale_in_hold is longer than a leg).
type actuator struct {
	pool     *simPool
	targets  string
	scaling  string // the admin /scaling URL for the model
	cold     time.Duration
	max      int
	every    time.Duration
	progress io.Writer
	start    time.Time

	mu      sync.Mutex
	serving []string // URLs listed in the targets file
	events  []ScaleEvent
	peak    int
}

type pending struct {
	urls  []string
	ready time.Time
	event int
}

// run polls until ctx ends.
func (a *actuator) run(ctx context.Context) {
	client := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(a.every)
	defer t.Stop()
	var waiting []pending
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// Servers whose cold start is over join the targets file.
			for len(waiting) > 0 && !now.Before(waiting[0].ready) {
				w := waiting[0]
				waiting = waiting[1:]
				a.mu.Lock()
				a.serving = append(a.serving, w.urls...)
				urls := append([]string(nil), a.serving...)
				a.events[w.event].Serving = now.Sub(a.start)
				ev := a.events[w.event]
				a.mu.Unlock()
				if err := writeTargets(a.targets, urls); err != nil {
					a.say("  scale-out: %v\n", err)
					continue
				}
				a.say("  scale-out: %d servers serving at %.1fs, %.1fs after the signal asked\n",
					len(urls), ev.Serving.Seconds(), (ev.Serving - ev.Asked).Seconds())
			}
			sig, err := a.signal(ctx, client)
			if err != nil {
				continue // the next poll tries again, as a scaler does
			}
			want := int(math.Ceil(sig.DesiredBackends - 1e-9))
			have := a.pool.size()
			want = min(want, a.max)
			if want <= have {
				continue
			}
			urls, err := a.pool.startN(want - have)
			if err != nil {
				a.say("  scale-out: %v\n", err)
				continue
			}
			a.mu.Lock()
			ev := ScaleEvent{Asked: now.Sub(a.start), From: have, To: want, Measured: sig.ArrivalRequestsPerSecond, Forecast: -1}
			if sig.ForecastRequestsPerSecond != nil {
				ev.Forecast = *sig.ForecastRequestsPerSecond
			}
			a.events = append(a.events, ev)
			a.peak = max(a.peak, want)
			waiting = append(waiting, pending{urls: urls, ready: now.Add(a.cold), event: len(a.events) - 1})
			a.mu.Unlock()
			a.say("  scale-out: at %.1fs the signal asks for %d backends (arrivals %.0f/s, forecast p90 in %s %s), the pool has %d: starting %d (cold start %.1fs)\n",
				now.Sub(a.start).Seconds(), want, ev.Measured, a.cold.Round(time.Second), rate(ev.Forecast), have, want-have, a.cold.Seconds())
		}
	}
}

// signal reads the model's scaling signal from the admin listener's
// /scaling; desired_backends is rounded up as KEDA's metrics-api scaler
// does.
func (a *actuator) signal(ctx context.Context, client *http.Client) (scaling.Signal, error) {
	var sig scaling.Signal
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.scaling, nil)
	if err != nil {
		return sig, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return sig, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sig, fmt.Errorf("demo: /scaling answered %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&sig); err != nil {
		return sig, fmt.Errorf("demo: /scaling: %w", err)
	}
	return sig, nil
}

func rate(r float64) string {
	if r < 0 {
		return "none yet"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func (a *actuator) say(format string, args ...any) {
	if a.progress != nil {
		fmt.Fprintf(a.progress, format, args...)
	}
}

// result is what the actuator did: its scale-out events and the largest
// pool it asked for.
func (a *actuator) result() ([]ScaleEvent, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ScaleEvent(nil), a.events...), a.peak
}

func scalingURL(admin, model string) string {
	return admin + "/scaling?model=" + url.QueryEscape(model)
}
