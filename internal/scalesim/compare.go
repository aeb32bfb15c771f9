package scalesim

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/internal/forecast"
	"github.com/sluice-gw/sluice/internal/scaling"
	"github.com/sluice-gw/sluice/internal/sim"
)

// Setup is one side-by-side comparison of the controllers (the bench
// autoscale command's settings). Durations are in trace time except SLO
// and MaxWait, as in Options.
type Setup struct {
	// Workload to replay; Compare sets its Sample from PeakServers.
	Workload *Workload
	Server   sim.Config
	// PeakServers: requests are sampled so that the replay's busiest
	// window needs this many servers at their nominal rate.
	PeakServers                   float64
	ColdStart, Sync, SLO, MaxWait time.Duration
	// Headroom is the capacity the fixed and predictive pools keep above
	// the demand; Lead the forecast's lead (0 = the cold start); Hold the
	// predictive scale-in hold.
	Headroom   float64
	Lead, Hold time.Duration
	// HPATargets are the utilisation targets swept for the reactive
	// column, with the HPA's Tolerance and scale-down Stabilisation.
	HPATargets    []float64
	Tolerance     float64
	Stabilisation time.Duration
}

// Column is one controller's run and its summary.
type Column struct {
	Name    string
	Summary Summary
	Result  *Result
}

// SweepRow is one HPA utilisation target of the reactive sweep.
type SweepRow struct {
	Target  float64
	Summary Summary
}

// Comparison is the outcome of Compare: the four columns (fixed, the best
// reactive target, predictive, and the predictive policy without a
// forecast), the sweep behind the reactive column, and the demand scale.
type Comparison struct {
	Fixed, Reactive, Predictive, SignalOnly Column
	Sweep                                   []SweepRow
	// ServiceRate is one server's nominal requests/s on the workload's
	// lengths; PeakNeed and MeanNeed the servers the busiest and the
	// mean window need at that rate.
	ServiceRate, PeakNeed, MeanNeed float64
	// Need converts a trace rate into the servers it needs.
	Need func(rate float64) float64
}

// Columns are the four columns in their printed order.
func (c *Comparison) Columns() []Column {
	return []Column{c.Fixed, c.Reactive, c.Predictive, c.SignalOnly}
}

// Compare runs every controller on the same workload, in parallel (each run
// is independent and deterministic for the workload's seed), and picks the
// reactive column: the swept target with the fewest SLO-violation minutes,
// then the lowest cost.
func Compare(s Setup) (*Comparison, error) {
	w := s.Workload
	c := &Comparison{ServiceRate: w.ServiceRate(s.Server)}
	top, mean := 0.0, 0.0
	for _, r := range w.Rates {
		top = max(top, r)
		mean += r / float64(len(w.Rates))
	}
	if !(top > 0) || !(c.ServiceRate > 0) || !(s.PeakServers > 0) {
		return nil, errors.New("the replayed days carry no traffic")
	}
	if len(s.HPATargets) == 0 {
		return nil, errors.New("no HPA utilisation target to sweep")
	}
	w.Sample = s.PeakServers * c.ServiceRate / (top * w.Compress)
	if err := w.Validate(); err != nil {
		return nil, err
	}
	c.Need = func(rate float64) float64 { return rate * w.Sample * w.Compress / c.ServiceRate }
	c.PeakNeed, c.MeanNeed = c.Need(top), c.Need(mean)

	ctls, err := s.controllers(c)
	if err != nil {
		return nil, err
	}
	results, err := runAll(w, s.options(c), ctls)
	if err != nil {
		return nil, err
	}
	column := func(i int, name string) Column {
		return Column{Name: name, Result: results[i], Summary: Summarise(w, results[i], s.SLO, c.Need)}
	}
	c.Fixed, c.Predictive, c.SignalOnly = column(0, "fixed"), column(1, "predictive"), column(2, "signal-only(no_forecast)")
	for i, t := range s.HPATargets {
		col := column(firstHPA+i, fmt.Sprintf("reactive(hpa_target=%.2f)", t))
		c.Sweep = append(c.Sweep, SweepRow{Target: t, Summary: col.Summary})
		if b := c.Reactive.Summary; i == 0 || col.Summary.ViolationMinutes < b.ViolationMinutes ||
			col.Summary.ViolationMinutes == b.ViolationMinutes && col.Summary.ServerMinutes < b.ServerMinutes {
			c.Reactive = col
		}
	}
	return c, nil
}

// firstHPA is the index of the first swept HPA among the controllers run.
const firstHPA = 3

func (s Setup) options(c *Comparison) Options {
	return Options{Server: s.Server, ColdStart: s.ColdStart, Sync: s.Sync, SLO: s.SLO, MaxWait: s.MaxWait,
		InitialServers: int(math.Ceil(c.Need(s.Workload.Rates[0]) * (1 + s.Headroom)))}
}

// controllers are fixed (sized for the mean), predictive with a forecaster
// warmed on the days before the replay, the same policy without a
// forecast, then one HPA per swept target.
func (s Setup) controllers(c *Comparison) ([]Controller, error) {
	w := s.Workload
	fc, err := forecast.New(forecast.Config{Interval: w.Window})
	if err != nil {
		return nil, err
	}
	t0 := time.Unix(0, 0)
	for i, r := range w.Warm {
		fc.Observe(t0.Add(time.Duration(i)*w.Window), forecast.Key{Model: "m"}, r*w.Window.Seconds(), 0)
	}
	replayAt := t0.Add(time.Duration(len(w.Warm)) * w.Window)
	fc.Advance(replayAt)

	lead := s.Lead
	if lead == 0 {
		lead = s.ColdStart
	}
	pol := scaling.Policy{Headroom: s.Headroom, PriorSlotRate: c.ServiceRate / float64(sim.DefaultSlots)}
	ctls := []Controller{
		Fixed{N: int(math.Ceil(c.MeanNeed * (1 + s.Headroom)))},
		NewPredictive(fc, replayAt, w, pol, lead, s.Hold, s.SLO, c.ServiceRate),
		NewPredictive(nil, replayAt, w, pol, lead, s.Hold, s.SLO, c.ServiceRate),
	}
	for _, t := range s.HPATargets {
		ctls = append(ctls, &HPA{Target: t, Tolerance: s.Tolerance, Window: time.Duration(float64(s.Stabilisation) / w.Compress)})
	}
	return ctls, nil
}

// runAll runs each controller on its own goroutine and waits for all.
func runAll(w *Workload, opt Options, ctls []Controller) ([]*Result, error) {
	results := make([]*Result, len(ctls))
	errs := make([]error, len(ctls))
	var wg sync.WaitGroup
	for i, ctl := range ctls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opt
			if _, fixed := ctl.(Fixed); fixed {
				o.InitialServers = ctl.Desired(View{})
			}
			results[i], errs[i] = Run(w, o, ctl)
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}
